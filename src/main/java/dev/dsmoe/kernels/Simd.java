package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Small Vector API building blocks shared by the non-GEMM kernels: reductions and elementwise
 * loops over one contiguous float segment, each with a scalar tail for lengths that are not a
 * multiple of the vector length. Package-private: callers use the kernel classes.
 */
final class Simd {

    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int L = S.length();

    /**
     * Minimum elements of work per parallel chunk for cheap elementwise kernels: below this a
     * thread hand-off costs more than it saves.
     */
    static final int MIN_CHUNK = 1 << 15;

    private Simd() {}

    /** Rows per parallel chunk so that a chunk holds at least {@link #MIN_CHUNK} elements. */
    static int rowGrain(int width) {
        return Math.max(1, MIN_CHUNK / Math.max(1, width));
    }

    /** {@code sum_i a[ao+i] * b[bo+i]}. */
    static float dot(float[] a, int ao, float[] b, int bo, int n) {
        int i = 0;
        float s = 0f;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                acc = FloatVector.fromArray(S, a, ao + i).fma(FloatVector.fromArray(S, b, bo + i), acc);
            }
            s = acc.reduceLanes(VectorOperators.ADD);
        }
        for (; i < n; i++) s += a[ao + i] * b[bo + i];
        return s;
    }

    /** {@code sum_i a[ao+i] * b[bo+i] * c[co+i]}. */
    static float dot3(float[] a, int ao, float[] b, int bo, float[] c, int co, int n) {
        int i = 0;
        float s = 0f;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                FloatVector ab = FloatVector.fromArray(S, a, ao + i).mul(FloatVector.fromArray(S, b, bo + i));
                acc = ab.fma(FloatVector.fromArray(S, c, co + i), acc);
            }
            s = acc.reduceLanes(VectorOperators.ADD);
        }
        for (; i < n; i++) s += a[ao + i] * b[bo + i] * c[co + i];
        return s;
    }

    /** {@code sum_i a[o+i]^2}. */
    static float sumSquares(float[] a, int o, int n) {
        return dot(a, o, a, o, n);
    }

    /** {@code sum_i a[o+i]}. */
    static float sum(float[] a, int o, int n) {
        int i = 0;
        float s = 0f;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector acc = FloatVector.zero(S);
            for (; i < bound; i += L) acc = acc.add(FloatVector.fromArray(S, a, o + i));
            s = acc.reduceLanes(VectorOperators.ADD);
        }
        for (; i < n; i++) s += a[o + i];
        return s;
    }

    /** {@code max_i a[o+i]}; {@code -Infinity} for n = 0. NaN propagates. */
    static float max(float[] a, int o, int n) {
        int i = 0;
        float m = Float.NEGATIVE_INFINITY;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector acc = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
            for (; i < bound; i += L) acc = acc.max(FloatVector.fromArray(S, a, o + i));
            m = acc.reduceLanes(VectorOperators.MAX);
        }
        for (; i < n; i++) m = Math.max(m, a[o + i]);
        return m;
    }

    /** {@code sum_i exp(x[xo+i] - shift)}, writing nothing. */
    static float sumExp(float[] x, int xo, int n, float shift) {
        int i = 0;
        float s = 0f;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector sh = FloatVector.broadcast(S, shift);
            FloatVector acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                acc = acc.add(FloatVector.fromArray(S, x, xo + i).sub(sh).lanewise(VectorOperators.EXP));
            }
            s = acc.reduceLanes(VectorOperators.ADD);
        }
        for (; i < n; i++) s += (float) Math.exp(x[xo + i] - shift);
        return s;
    }

    /** {@code y[yo+i] = exp(x[xo+i] - shift)}, returning the sum; y may be x (same offset). */
    static float expShiftStore(float[] x, int xo, float[] y, int yo, int n, float shift) {
        int i = 0;
        float s = 0f;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector sh = FloatVector.broadcast(S, shift);
            FloatVector acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                FloatVector e = FloatVector.fromArray(S, x, xo + i).sub(sh).lanewise(VectorOperators.EXP);
                e.intoArray(y, yo + i);
                acc = acc.add(e);
            }
            s = acc.reduceLanes(VectorOperators.ADD);
        }
        for (; i < n; i++) {
            float e = (float) Math.exp(x[xo + i] - shift);
            y[yo + i] = e;
            s += e;
        }
        return s;
    }

    /** {@code y[yo+i] = x[xo+i] * alpha}; y may be x (same offset). */
    static void scale(float[] x, int xo, float[] y, int yo, int n, float alpha) {
        int i = 0;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector a = FloatVector.broadcast(S, alpha);
            for (; i < bound; i += L) FloatVector.fromArray(S, x, xo + i).mul(a).intoArray(y, yo + i);
        }
        for (; i < n; i++) y[yo + i] = x[xo + i] * alpha;
    }

    /** {@code y[yo+i] = (x[xo+i] - a) - b}; y may be x (same offset). */
    static void subTwice(float[] x, int xo, float[] y, int yo, int n, float a, float b) {
        int i = 0;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector av = FloatVector.broadcast(S, a), bv = FloatVector.broadcast(S, b);
            for (; i < bound; i += L) FloatVector.fromArray(S, x, xo + i).sub(av).sub(bv).intoArray(y, yo + i);
        }
        for (; i < n; i++) y[yo + i] = (x[xo + i] - a) - b;
    }

    /** {@code y[yo+i] += alpha * x[xo+i]}. */
    static void axpy(float alpha, float[] x, int xo, float[] y, int yo, int n) {
        int i = 0;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector a = FloatVector.broadcast(S, alpha);
            for (; i < bound; i += L) {
                FloatVector.fromArray(S, x, xo + i).fma(a, FloatVector.fromArray(S, y, yo + i)).intoArray(y, yo + i);
            }
        }
        for (; i < n; i++) y[yo + i] += alpha * x[xo + i];
    }

    /** {@code y[yo+i] += alpha * a[ao+i] * b[bo+i]}. */
    static void dot3Accumulate(float[] a, int ao, float[] b, int bo, float alpha, float[] y, int yo, int n) {
        int i = 0;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector al = FloatVector.broadcast(S, alpha);
            for (; i < bound; i += L) {
                FloatVector ab = FloatVector.fromArray(S, a, ao + i).mul(FloatVector.fromArray(S, b, bo + i));
                ab.fma(al, FloatVector.fromArray(S, y, yo + i)).intoArray(y, yo + i);
            }
        }
        for (; i < n; i++) y[yo + i] += alpha * a[ao + i] * b[bo + i];
    }

    /** {@code a[o..o+n) = 0}. */
    static void zero(float[] a, int o, int n) {
        java.util.Arrays.fill(a, o, o + n, 0f);
    }

    /** Throws unless {@code [off, off+len)} lies inside an array of length {@code length}. */
    static void checkRange(String name, float[] a, long off, long len) {
        if (a == null) throw new IllegalArgumentException(name + " is null");
        if (off < 0 || len < 0 || off + len > a.length) {
            throw new IllegalArgumentException(name + ": range [" + off + ", " + (off + len)
                    + ") outside array of length " + a.length);
        }
    }

    /** Throws unless {@code [off, off+len)} lies inside an int array of length {@code length}. */
    static void checkRange(String name, int[] a, long off, long len) {
        if (a == null) throw new IllegalArgumentException(name + " is null");
        if (off < 0 || len < 0 || off + len > a.length) {
            throw new IllegalArgumentException(name + ": range [" + off + ", " + (off + len)
                    + ") outside array of length " + a.length);
        }
    }

    /** Extent of a strided [rows, width] block: {@code (rows-1)*stride + width}, 0 when empty. */
    static long extent(long rows, long stride, long width) {
        return rows == 0 || width == 0 ? 0 : (rows - 1) * stride + width;
    }
}
