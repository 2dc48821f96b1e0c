package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
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
        int i = 0;
        FloatVector k = FloatVector.broadcast(Simd.S, K);
        FloatVector c = FloatVector.broadcast(Simd.S, C);
        FloatVector half = FloatVector.broadcast(Simd.S, 0.5f);
        for (int bound = Simd.S.loopBound(n); i < bound; i += Simd.L) {
            FloatVector v = FloatVector.fromArray(Simd.S, x, xo + i);
            FloatVector u = v.mul(v).mul(c).mul(v).add(v).mul(k);
            FloatVector t = Simd.tanh(u);
            v.mul(half).mul(t.add(1f)).intoArray(y, yo + i);
        }
        for (; i < n; i++) {
            float v = x[xo + i];
            float t = Simd.tanh((float) (K * (v + C * v * v * v)));
            y[yo + i] = 0.5f * v * (1f + t);
        }
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
        int i = 0;
        FloatVector k = FloatVector.broadcast(Simd.S, K);
        FloatVector c = FloatVector.broadcast(Simd.S, C);
        FloatVector c3 = FloatVector.broadcast(Simd.S, 3f * C);
        FloatVector half = FloatVector.broadcast(Simd.S, 0.5f);
        for (int bound = Simd.S.loopBound(n); i < bound; i += Simd.L) {
            FloatVector v = FloatVector.fromArray(Simd.S, x, xo + i);
            FloatVector v2 = v.mul(v);
            FloatVector t = Simd.tanh(v2.mul(c).mul(v).add(v).mul(k));
            // 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 C x^2)
            FloatVector sech2 = t.mul(t).neg().add(1f);
            FloatVector inner = v2.fma(c3, FloatVector.broadcast(Simd.S, 1f)).mul(k);
            FloatVector grad = t.add(1f).mul(half).add(v.mul(half).mul(sech2).mul(inner));
            FloatVector r = grad.mul(FloatVector.fromArray(Simd.S, dy, go + i));
            if (accumulate) r = r.add(FloatVector.fromArray(Simd.S, dx, o + i));
            r.intoArray(dx, o + i);
        }
        for (; i < n; i++) {
            float v = x[xo + i];
            float t = Simd.tanh((float) (K * (v + C * v * v * v)));
            float grad = 0.5f * (1f + t) + 0.5f * v * (1f - t * t) * K * (1f + 3f * C * v * v);
            float r = grad * dy[go + i];
            dx[o + i] = accumulate ? dx[o + i] + r : r;
        }
    }
}
