package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;

/**
 * AdamW (Loshchilov and Hutter) over a range of a flat parameter buffer, with decoupled weight
 * decay and bias correction, matching PyTorch's {@code torch.optim.AdamW}:
 * <pre>
 *   m = beta1*m + (1-beta1)*g
 *   v = beta2*v + (1-beta2)*g^2
 *   p = p - lr*wd*p - lr * (m / (1-beta1^step)) / (sqrt(v / (1-beta2^step)) + eps)
 * </pre>
 * {@code p, g, m, v} are parallel flat buffers (same indexing); the update touches
 * {@code [from, to)} only, so weight decay can be given per range (e.g. {@code wd} for weight
 * matrices, 0 for norm gains). Split across {@link Parallel} in contiguous chunks.
 */
public final class AdamW {

    private AdamW() {}

    /**
     * One step over {@code [from, to)}. {@code step} counts from 1 (the first update). g is
     * read only; p, m, v are updated in place.
     */
    public static void update(float[] p, float[] g, float[] m, float[] v, int from, int to,
                              float lr, float beta1, float beta2, float eps, float weightDecay, long step) {
        if (step < 1) throw new IllegalArgumentException("AdamW step counts from 1, got " + step);
        if (from < 0 || to < from) throw new IllegalArgumentException("bad range [" + from + ", " + to + ")");
        Simd.checkRange("p", p, from, to - from);
        Simd.checkRange("g", g, from, to - from);
        Simd.checkRange("m", m, from, to - from);
        Simd.checkRange("v", v, from, to - from);
        final float b1 = beta1, b2 = beta2;
        final float c1 = 1f - beta1, c2 = 1f - beta2;
        // step size and denominator scale from the bias corrections (computed in double)
        final float stepSize = (float) (lr / (1.0 - Math.pow(beta1, step)));
        final float invSqrtBc2 = (float) (1.0 / Math.sqrt(1.0 - Math.pow(beta2, step)));
        final float decay = 1f - lr * weightDecay;
        Parallel.forRange(to - from, Simd.MIN_CHUNK, (s, e) -> {
            int i = from + s, end = from + e;
            FloatVector vb1 = FloatVector.broadcast(Simd.S, b1), vc1 = FloatVector.broadcast(Simd.S, c1);
            FloatVector vb2 = FloatVector.broadcast(Simd.S, b2), vc2 = FloatVector.broadcast(Simd.S, c2);
            FloatVector vss = FloatVector.broadcast(Simd.S, -stepSize);
            FloatVector vib = FloatVector.broadcast(Simd.S, invSqrtBc2);
            FloatVector veps = FloatVector.broadcast(Simd.S, eps);
            FloatVector vdec = FloatVector.broadcast(Simd.S, decay);
            for (int bound = i + Simd.S.loopBound(end - i); i < bound; i += Simd.L) {
                FloatVector gi = FloatVector.fromArray(Simd.S, g, i);
                FloatVector mi = FloatVector.fromArray(Simd.S, m, i).mul(vb1).add(gi.mul(vc1));
                FloatVector vi = FloatVector.fromArray(Simd.S, v, i).mul(vb2).add(gi.mul(gi).mul(vc2));
                mi.intoArray(m, i);
                vi.intoArray(v, i);
                FloatVector denom = vi.sqrt().mul(vib).add(veps);
                FloatVector pi = FloatVector.fromArray(Simd.S, p, i).mul(vdec);
                mi.div(denom).fma(vss, pi).intoArray(p, i);
            }
            for (; i < end; i++) {
                float gi = g[i];
                float mi = b1 * m[i] + c1 * gi;
                float vi = b2 * v[i] + c2 * gi * gi;
                m[i] = mi;
                v[i] = vi;
                p[i] = p[i] * decay - stepSize * (mi / ((float) Math.sqrt(vi) * invSqrtBc2 + eps));
            }
        });
    }
}
