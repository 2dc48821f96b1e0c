package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;

/**
 * RMSNorm over rows: {@code y = x / sqrt(mean(x^2) + eps) * g}.
 *
 * <p>Shapes: {@code x, y, dy, dx} are {@code [T, d]} row-major (contiguous rows), {@code g, dg}
 * are {@code [d]}, {@code rstd} is {@code [T]} and holds {@code 1 / sqrt(mean(x^2) + eps)} per
 * row, saved by the forward for the backward. Rows (forward, dx) and columns (dg) are split
 * across {@link Parallel}; each output element is written by one thread in a fixed order, so
 * results do not depend on the thread count.
 */
public final class RmsNorm {

    private RmsNorm() {}

    /**
     * Forward over the first {@code rows} rows of views (rows contiguous, width {@code x.cols()});
     * {@code rstd} may be null (inference).
     */
    public static void forward(TensorView x, TensorView gain, TensorView y, float[] rstd, int rows, float eps) {
        forward(x, 0, gain, y, rstd, rows, eps);
    }

    /** {@link #forward(TensorView, TensorView, TensorView, float[], int, float)} from row {@code xRow} of x on. */
    public static void forward(TensorView x, int xRow, TensorView gain, TensorView y, float[] rstd, int rows, float eps) {
        forward(x.array(), x.rowOff(xRow), gain.array(), gain.off(), y.array(), y.off(), rstd, 0, rows, x.cols(), eps);
    }

    /**
     * Backward over the first {@code rows} rows of views: dx overwritten or accumulated, the
     * gain's gradient {@code dGain} accumulated.
     */
    public static void backward(TensorView x, TensorView gain, float[] rstd, TensorView dy, TensorView dx,
                                TensorView dGain, int rows, boolean accumulateDx) {
        backward(x.array(), x.off(), gain.array(), gain.off(), rstd, 0, dy.array(), dy.off(), dx.array(), dx.off(),
                dGain.array(), dGain.off(), rows, x.cols(), accumulateDx);
    }

    /**
     * Forward. {@code rstd} may be null (inference). y may alias x (same offset).
     */
    public static void forward(float[] x, int xOff, float[] g, int gOff, float[] y, int yOff,
                               float[] rstd, int rOff, int T, int d, float eps) {
        if (T < 0 || d <= 0) throw new IllegalArgumentException("need T >= 0 and d > 0");
        Simd.checkRange("x", x, xOff, (long) T * d);
        Simd.checkRange("g", g, gOff, d);
        Simd.checkRange("y", y, yOff, (long) T * d);
        if (rstd != null) Simd.checkRange("rstd", rstd, rOff, T);
        Parallel.forRange(T, Simd.rowGrain(d), (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                int xo = xOff + t * d, yo = yOff + t * d;
                float r = (float) (1.0 / Math.sqrt(Simd.sumSquares(x, xo, d) / d + eps));
                if (rstd != null) rstd[rOff + t] = r;
                int i = 0;
                FloatVector rv = FloatVector.broadcast(Simd.S, r);
                for (int bound = Simd.S.loopBound(d); i < bound; i += Simd.L) {
                    FloatVector.fromArray(Simd.S, x, xo + i).mul(rv)
                            .mul(FloatVector.fromArray(Simd.S, g, gOff + i)).intoArray(y, yo + i);
                }
                for (; i < d; i++) y[yo + i] = x[xo + i] * r * g[gOff + i];
            }
        });
    }

    /**
     * Backward: {@code dx = rstd * (g*dy - xhat * mean(g*dy*xhat))} with {@code xhat = x*rstd},
     * overwriting dx ({@code accumulateDx = false}) or adding to it (true, e.g. straight into the
     * residual stream's gradient); {@code dg += sum_t dy*xhat} always accumulates. dx must not
     * alias x or dy.
     */
    public static void backward(float[] x, int xOff, float[] g, int gOff, float[] rstd, int rOff,
                                float[] dy, int dyOff, float[] dx, int dxOff, float[] dg, int dgOff,
                                int T, int d, boolean accumulateDx) {
        if (T < 0 || d <= 0) throw new IllegalArgumentException("need T >= 0 and d > 0");
        Simd.checkRange("x", x, xOff, (long) T * d);
        Simd.checkRange("g", g, gOff, d);
        Simd.checkRange("rstd", rstd, rOff, T);
        Simd.checkRange("dy", dy, dyOff, (long) T * d);
        Simd.checkRange("dx", dx, dxOff, (long) T * d);
        Simd.checkRange("dg", dg, dgOff, d);
        Parallel.forRange(T, Simd.rowGrain(d), (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                int xo = xOff + t * d, go = dyOff + t * d, o = dxOff + t * d;
                float r = rstd[rOff + t];
                // mean(g*dy*xhat) = r/d * sum(g*dy*x); dx = r*g*dy - x * r^2 * mean(...)
                float m = r / d * Simd.dot3(g, gOff, dy, go, x, xo, d);
                float c = r * r * m;
                int i = 0;
                FloatVector rv = FloatVector.broadcast(Simd.S, r);
                FloatVector cv = FloatVector.broadcast(Simd.S, -c);
                for (int bound = Simd.S.loopBound(d); i < bound; i += Simd.L) {
                    FloatVector gdy = FloatVector.fromArray(Simd.S, g, gOff + i)
                            .mul(FloatVector.fromArray(Simd.S, dy, go + i));
                    FloatVector v = FloatVector.fromArray(Simd.S, x, xo + i).fma(cv, gdy.mul(rv));
                    if (accumulateDx) v = v.add(FloatVector.fromArray(Simd.S, dx, o + i));
                    v.intoArray(dx, o + i);
                }
                for (; i < d; i++) {
                    float v = r * g[gOff + i] * dy[go + i] - c * x[xo + i];
                    dx[o + i] = accumulateDx ? dx[o + i] + v : v;
                }
            }
        });
        // dg by column blocks: every thread walks all rows over its own columns.
        int colGrain = Math.max(Simd.L, Simd.MIN_CHUNK / Math.max(1, T));
        Parallel.forRange(d, colGrain, (j0, j1) -> {
            int w = j1 - j0;
            for (int t = 0; t < T; t++) {
                Simd.dot3Accumulate(dy, dyOff + t * d + j0, x, xOff + t * d + j0, rstd[rOff + t],
                        dg, dgOff + j0, w);
            }
        });
    }
}
