package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Row-wise softmax and log-softmax over contiguous rows, in max-subtraction form.
 *
 * <p>Shapes: {@code x, y, dy, dx} are {@code [rows, n]} row-major blocks starting at their
 * offsets. Outputs may alias inputs at the same offset (in-place). Rows are split across
 * {@link Parallel}; results do not depend on the thread count.
 */
public final class Softmax {

    private Softmax() {}

    /** {@code y[r] = softmax(x[r])} for each of {@code rows} rows of width {@code n}. */
    public static void forward(float[] x, int xOff, float[] y, int yOff, int rows, int n) {
        eachRow(x, xOff, y, yOff, rows, n, Softmax::forwardRow);
    }

    /** One row: {@code y = softmax(x)} over {@code n} elements (serial; y may be x). */
    public static void forwardRow(float[] x, int xo, float[] y, int yo, int n) {
        if (n == 0) return;
        float max = Simd.max(x, xo, n);
        float sum = Simd.expShiftStore(x, xo, y, yo, n, max);
        Simd.scale(y, yo, y, yo, n, 1f / sum);
    }

    /** {@code y[r] = log_softmax(x[r]) = x - max - log(sum(exp(x - max)))} per row. */
    public static void logForward(float[] x, int xOff, float[] y, int yOff, int rows, int n) {
        eachRow(x, xOff, y, yOff, rows, n, Softmax::logForwardRow);
    }

    /** One row of {@link #logForward} (serial; y may be x). */
    public static void logForwardRow(float[] x, int xo, float[] y, int yo, int n) {
        if (n == 0) return;
        float max = Simd.max(x, xo, n);
        float logSum = (float) StrictMath.log(Simd.sumExp(x, xo, n, max));
        // (x - max) - logSum, not x - (max + logSum): keeps precision when |max| is large
        Simd.subTwice(x, xo, y, yo, n, max, logSum);
    }

    /**
     * Softmax backward from the saved output: {@code dx = y * (dy - sum(dy * y))} per row.
     * Overwrites dx when {@code accumulate} is false, adds to it when true. dx may alias dy
     * (same offset) only when {@code accumulate} is false.
     */
    public static void backward(float[] y, int yOff, float[] dy, int dyOff, float[] dx, int dxOff,
                                int rows, int n, boolean accumulate) {
        check(y, yOff, dy, dyOff, rows, n);
        Simd.checkRange("dx", dx, dxOff, (long) rows * n);
        Parallel.forRange(rows, Simd.rowGrain(n), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int yo = yOff + r * n, go = dyOff + r * n, xo = dxOff + r * n;
                float s = Simd.dot(dy, go, y, yo, n);
                int i = 0;
                FloatVector sv = FloatVector.broadcast(Simd.S, s);
                for (int bound = Simd.S.loopBound(n); i < bound; i += Simd.L) {
                    FloatVector d = FloatVector.fromArray(Simd.S, dy, go + i).sub(sv)
                            .mul(FloatVector.fromArray(Simd.S, y, yo + i));
                    if (accumulate) d = d.add(FloatVector.fromArray(Simd.S, dx, xo + i));
                    d.intoArray(dx, xo + i);
                }
                for (; i < n; i++) {
                    float d = y[yo + i] * (dy[go + i] - s);
                    dx[xo + i] = accumulate ? dx[xo + i] + d : d;
                }
            }
        });
    }

    /**
     * Log-softmax backward from the saved output y (the log-probabilities):
     * {@code dx = dy - exp(y) * sum(dy)} per row. Overwrites or accumulates as in
     * {@link #backward}; dx may alias dy (same offset) only when {@code accumulate} is false.
     */
    public static void logBackward(float[] y, int yOff, float[] dy, int dyOff, float[] dx, int dxOff,
                                   int rows, int n, boolean accumulate) {
        check(y, yOff, dy, dyOff, rows, n);
        Simd.checkRange("dx", dx, dxOff, (long) rows * n);
        Parallel.forRange(rows, Simd.rowGrain(n), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int yo = yOff + r * n, go = dyOff + r * n, xo = dxOff + r * n;
                float s = Simd.sum(dy, go, n);
                int i = 0;
                FloatVector sv = FloatVector.broadcast(Simd.S, s);
                for (int bound = Simd.S.loopBound(n); i < bound; i += Simd.L) {
                    FloatVector d = FloatVector.fromArray(Simd.S, dy, go + i).sub(
                            Simd.exp(FloatVector.fromArray(Simd.S, y, yo + i)).mul(sv));
                    if (accumulate) d = d.add(FloatVector.fromArray(Simd.S, dx, xo + i));
                    d.intoArray(dx, xo + i);
                }
                for (; i < n; i++) {
                    float d = dy[go + i] - Simd.exp(y[yo + i]) * s;
                    dx[xo + i] = accumulate ? dx[xo + i] + d : d;
                }
            }
        });
    }

    /** A serial one-row kernel: {@code y[yo, n] = f(x[xo, n])}. */
    private interface RowKernel {
        void apply(float[] x, int xo, float[] y, int yo, int n);
    }

    /** Checks the ranges, then runs {@code kernel} on each of {@code rows} rows, split across threads. */
    private static void eachRow(float[] x, int xOff, float[] y, int yOff, int rows, int n, RowKernel kernel) {
        check(x, xOff, y, yOff, rows, n);
        Parallel.forRange(rows, Simd.rowGrain(n), (r0, r1) -> {
            for (int r = r0; r < r1; r++) kernel.apply(x, xOff + r * n, y, yOff + r * n, n);
        });
    }

    private static void check(float[] a, int aOff, float[] b, int bOff, int rows, int n) {
        if (rows < 0 || n < 0) throw new IllegalArgumentException("rows and n must be >= 0");
        Simd.checkRange("input", a, aOff, (long) rows * n);
        Simd.checkRange("output", b, bOff, (long) rows * n);
    }
}
