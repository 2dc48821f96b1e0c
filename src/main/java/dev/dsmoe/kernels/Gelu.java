package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * GELU, tanh approximation: {@code gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))}.
 *
 * <p>Elementwise over a flat segment of {@code n} floats; split across {@link Parallel} in
 * contiguous chunks.
 */
public final class Gelu {

    static final float K = (float) Math.sqrt(2.0 / Math.PI);
    static final float C = 0.044715f;

    private Gelu() {}

    /** {@code y[i] = gelu(x[i])}, overwriting y; y may alias x (same offset). */
    public static void forward(float[] x, int xOff, float[] y, int yOff, int n) {
        Simd.checkRange("x", x, xOff, n);
        Simd.checkRange("y", y, yOff, n);
        Parallel.forRange(n, Simd.MIN_CHUNK, (s, e) -> forwardRange(x, xOff + s, y, yOff + s, e - s));
    }

    private static void forwardRange(float[] x, int xo, float[] y, int yo, int n) {
        range(x, xo, null, 0, y, yo, n, false);
    }

    /**
     * {@code dx[i] = gelu'(x[i]) * dy[i]} from the forward's input x, overwriting dx
     * ({@code accumulate = false}) or adding to it (true). dx may alias dy (same offset) in
     * either mode, and x in overwrite mode.
     */
    public static void backward(float[] x, int xOff, float[] dy, int dyOff, float[] dx, int dxOff,
                                int n, boolean accumulate) {
        Simd.checkRange("x", x, xOff, n);
        Simd.checkRange("dy", dy, dyOff, n);
        Simd.checkRange("dx", dx, dxOff, n);
        Parallel.forRange(n, Simd.MIN_CHUNK, (s, e) ->
                backwardRange(x, xOff + s, dy, dyOff + s, dx, dxOff + s, e - s, accumulate));
    }

    private static void backwardRange(float[] x, int xo, float[] dy, int go, float[] dx, int o,
                                      int n, boolean accumulate) {
        range(x, xo, dy, go, dx, o, n, accumulate);
    }

    /**
     * Forward ({@code dy == null}: {@code out = gelu(x)}) or backward ({@code out (+)= gelu'(x) dy})
     * in one loop. tanh, and the exp inside it, are written out in the loop rather than called:
     * a vector passed to a call that C2 does not inline is boxed on the heap, and a method this
     * size is past the point where C2 inlines calls (measured: GELU then allocated megabytes per
     * training step). Same formulas and rounding as {@link Simd#tanh(float)} and {@link Simd#exp(float)}.
     */
    private static void range(float[] x, int xo, float[] dy, int go, float[] out, int o, int n, boolean accumulate) {
        int i = 0;
        FloatVector k = FloatVector.broadcast(Simd.S, K);
        FloatVector c = FloatVector.broadcast(Simd.S, C);
        FloatVector c3 = FloatVector.broadcast(Simd.S, 3f * C);
        FloatVector half = FloatVector.broadcast(Simd.S, 0.5f);
        FloatVector one = FloatVector.broadcast(Simd.S, 1f);
        FloatVector two = FloatVector.broadcast(Simd.S, 2f);
        for (int bound = Simd.S.loopBound(n); i < bound; i += Simd.L) {
            FloatVector v = FloatVector.fromArray(Simd.S, x, xo + i);
            FloatVector v2 = v.mul(v);
            FloatVector u = v2.mul(c).mul(v).add(v).mul(k);
            // t = tanh(u): an odd polynomial below 0.625, else 1 - 2/(e^{2|u|}+1), sign restored
            FloatVector a = u.abs();
            FloatVector z = u.mul(u);
            FloatVector small = z.mul(-5.70498872745E-3f).add(2.06390887954E-2f).mul(z).add(-5.37397155531E-2f).mul(z)
                    .add(1.33314422036E-1f).mul(z).add(-3.33332819422E-1f).mul(z).mul(u).add(u);
            // e = exp(2|u|)
            FloatVector ex = a.mul(2f);
            var under = ex.compare(VectorOperators.LT, Simd.EXP_LO);
            var over = ex.compare(VectorOperators.GT, Simd.EXP_HI);
            FloatVector xc = ex.max(Simd.EXP_LO).min(Simd.EXP_HI);
            FloatVector nv = xc.mul(Simd.LOG2E).add(Simd.ROUND).sub(Simd.ROUND);
            FloatVector r = nv.mul(-Simd.EXP_C1).add(xc);
            r = nv.mul(-Simd.EXP_C2).add(r);
            FloatVector rr = r.mul(r);
            FloatVector p = r.mul(1.9875691500E-4f).add(1.3981999507E-3f).mul(r).add(8.3334519073E-3f).mul(r)
                    .add(4.1665795894E-2f).mul(r).add(1.6666665459E-1f).mul(r).add(5.0000001201E-1f)
                    .mul(rr).add(r).add(1f);
            IntVector bits = ((IntVector) nv.convert(VectorOperators.F2I, 0)).add(127)
                    .lanewise(VectorOperators.LSHL, 23);
            FloatVector e = p.mul(bits.reinterpretAsFloats()).blend(0f, under).blend(Float.POSITIVE_INFINITY, over);
            FloatVector big = one.sub(two.div(e.add(1f)));
            big = big.blend(big.neg(), u.compare(VectorOperators.LT, 0f));
            FloatVector t = big.blend(small, a.compare(VectorOperators.LT, 0.625f));
            FloatVector res;
            if (dy == null) {
                res = v.mul(half).mul(t.add(1f));
            } else {
                // 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 C x^2)
                FloatVector sech2 = t.mul(t).neg().add(1f);
                FloatVector inner = v2.fma(c3, one).mul(k);
                FloatVector grad = t.add(1f).mul(half).add(v.mul(half).mul(sech2).mul(inner));
                res = grad.mul(FloatVector.fromArray(Simd.S, dy, go + i));
                if (accumulate) res = res.add(FloatVector.fromArray(Simd.S, out, o + i));
            }
            res.intoArray(out, o + i);
        }
        for (; i < n; i++) { // the vector loop's operations in the same order, so the same bits
            float v = x[xo + i];
            float t = Simd.tanh((v * v * C * v + v) * K);
            if (dy == null) {
                out[o + i] = v * 0.5f * (t + 1f);
            } else {
                float grad = (t + 1f) * 0.5f + v * 0.5f * (-(t * t) + 1f) * (Math.fma(v * v, 3f * C, 1f) * K);
                float res = grad * dy[go + i];
                out[o + i] = accumulate ? out[o + i] + res : res;
            }
        }
    }
}
