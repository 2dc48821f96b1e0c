package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Small Vector API building blocks shared by the non-GEMM kernels: reductions and elementwise
 * loops over one contiguous float segment, each with a scalar tail for lengths that are not a
 * multiple of the vector length. Package-private: callers use the kernel classes.
 *
 * <p><b>Determinism.</b> The Vector API's {@code reduceLanes(ADD)} and its {@code EXP}/{@code TANH}
 * operators give different roundings when compiled (tree reduction, SVML) than when interpreted
 * (sequential lanes, {@code Math.exp}), so a result would depend on how warm the JIT is. Every
 * kernel therefore reduces with {@link #addLanes} (a fixed pairwise order built from lane
 * shuffles) and computes exp and tanh with {@link #exp}/{@link #tanh} (Cephes-style polynomials
 * in plain IEEE arithmetic), which round identically in every mode.
 *
 * <p><b>No vector crosses a call that may not be inlined.</b> C2 boxes a vector passed to or
 * returned from a method it did not inline, which allocates per call; it stops inlining in large
 * methods and declines callees that already have a big compiled copy. So the hot loops that need
 * exp ({@link #sumExp}, {@link #expShiftStore}, GELU) have its body written out, and so do the
 * per-row reductions ({@link #dot}, {@link #dot3}, {@link #sum}): they fold their accumulator
 * in place with the same shuffles as {@link #addLanes} instead of calling it. The chain behind
 * addLanes costs five inlining levels, and a CI run once compiled a training kernel where it
 * was not inlined (one boxed vector per token); a method that takes arrays cannot box. The mat-vec
 * kernels still call addLanes (DecodeStepAllocationTest watches them).
 */
final class Simd {

    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int L = S.length();

    /*
     * SHIFT_W moves lane i+W to lane i: the steps of a fixed pairwise reduction. Each is its own
     * static final field, not an array element: C2 only intrinsifies rearrange when it knows the
     * shuffle's exact class, and an array load hides it (the vectors were then boxed on the heap).
     */
    private static final VectorShuffle<Float> SHIFT_32 = shift(32), SHIFT_16 = shift(16), SHIFT_8 = shift(8),
            SHIFT_4 = shift(4), SHIFT_2 = shift(2), SHIFT_1 = shift(1);

    private static VectorShuffle<Float> shift(int w) {
        return VectorShuffle.fromOp(S, i -> (i + w) % L);
    }

    /**
     * Sum of the lanes in a fixed pairwise order (same rounding compiled or interpreted): lane i
     * plus lane i+L/2, then i+L/4, ... . Written as a chain of methods of under 35 bytecodes each
     * (MaxInlineSize) so that both JIT tiers always inline it, and as short a chain as that
     * allows (each link is an inlining level, and a level too deep is not inlined): a larger body got a compiled copy of its own, which
     * C2 then declined to inline ("callee is too large"), and every vector passed to it was boxed.
     */
    static float addLanes(FloatVector v) {
        return L == 16 ? fold16(v) : L == 8 ? fold8(v) : foldAnyLength(v);
    }

    private static float fold16(FloatVector v) {
        v = v.add(v.rearrange(SHIFT_8));
        v = v.add(v.rearrange(SHIFT_4));
        return fold2(v);
    }

    private static float fold8(FloatVector v) {
        v = v.add(v.rearrange(SHIFT_4));
        return fold2(v);
    }

    private static float fold2(FloatVector v) {
        v = v.add(v.rearrange(SHIFT_2));
        return v.add(v.rearrange(SHIFT_1)).lane(0);
    }

    /** {@link #addLanes} for vector lengths other than 8 and 16 (same order). */
    private static float foldAnyLength(FloatVector v) {
        if (L > 32) v = v.add(v.rearrange(SHIFT_32)); // up to 64 lanes (2048-bit SVE)
        if (L > 16) v = v.add(v.rearrange(SHIFT_16));
        if (L > 8) v = v.add(v.rearrange(SHIFT_8));
        if (L > 4) v = v.add(v.rearrange(SHIFT_4));
        if (L > 2) v = v.add(v.rearrange(SHIFT_2));
        if (L > 1) v = v.add(v.rearrange(SHIFT_1));
        return v.lane(0);
    }

    static final float LOG2E = 1.44269504088896341f, EXP_C1 = 0.693359375f, EXP_C2 = -2.12194440e-4f;
    static final float EXP_HI = 88.3762626647949f, EXP_LO = -87.3365447504f, ROUND = 12582912f; // 1.5·2^23

    /** e^x lane by lane, relative error about 1e-7; 0 below -87.3, +Inf above 88.4; NaN stays NaN. */
    static FloatVector exp(FloatVector x) {
        var under = x.compare(VectorOperators.LT, EXP_LO);
        var over = x.compare(VectorOperators.GT, EXP_HI);
        FloatVector xc = x.max(EXP_LO).min(EXP_HI);
        FloatVector n = xc.mul(LOG2E).add(ROUND).sub(ROUND); // round to nearest integer
        FloatVector r = n.mul(-EXP_C1).add(xc);
        r = n.mul(-EXP_C2).add(r);
        FloatVector z = r.mul(r);
        FloatVector p = r.mul(1.9875691500E-4f).add(1.3981999507E-3f).mul(r).add(8.3334519073E-3f).mul(r)
                .add(4.1665795894E-2f).mul(r).add(1.6666665459E-1f).mul(r).add(5.0000001201E-1f)
                .mul(z).add(r).add(1f);
        IntVector bits = ((IntVector) n.convert(VectorOperators.F2I, 0)).add(127).lanewise(VectorOperators.LSHL, 23);
        FloatVector y = p.mul(bits.reinterpretAsFloats());
        return y.blend(0f, under).blend(Float.POSITIVE_INFINITY, over);
    }

    /** Scalar twin of {@link #exp(FloatVector)} (same formula, same rounding). */
    static float exp(float x) {
        if (x < EXP_LO) return 0f;
        if (x > EXP_HI) return Float.POSITIVE_INFINITY;
        if (x != x) return x;
        float n = x * LOG2E + ROUND - ROUND;
        float r = n * -EXP_C1 + x;
        r = n * -EXP_C2 + r;
        float z = r * r;
        float p = ((((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r
                + 4.1665795894E-2f) * r + 1.6666665459E-1f) * r + 5.0000001201E-1f) * z + r) + 1f;
        return p * Float.intBitsToFloat(((int) n + 127) << 23);
    }

    /**
     * tanh: an odd polynomial below 0.625, else 1 - 2/(e^{2|x|}+1), sign restored. The vector
     * form is written out in {@link Gelu}'s loop (see there why).
     */
    static float tanh(float x) {
        float a = Math.abs(x);
        if (a < 0.625f) {
            float z = x * x;
            return ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z + -5.37397155531E-2f) * z
                    + 1.33314422036E-1f) * z + -3.33332819422E-1f) * z * x + x;
        }
        float big = 1f - 2f / (exp(a * 2f) + 1f);
        return x < 0 ? -big : big;
    }

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
            // addLanes(acc) written out (see the class comment)
            if (L > 32) acc = acc.add(acc.rearrange(SHIFT_32));
            if (L > 16) acc = acc.add(acc.rearrange(SHIFT_16));
            if (L > 8) acc = acc.add(acc.rearrange(SHIFT_8));
            if (L > 4) acc = acc.add(acc.rearrange(SHIFT_4));
            if (L > 2) acc = acc.add(acc.rearrange(SHIFT_2));
            if (L > 1) acc = acc.add(acc.rearrange(SHIFT_1));
            s = acc.lane(0);
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
            // addLanes(acc) written out (see the class comment)
            if (L > 32) acc = acc.add(acc.rearrange(SHIFT_32));
            if (L > 16) acc = acc.add(acc.rearrange(SHIFT_16));
            if (L > 8) acc = acc.add(acc.rearrange(SHIFT_8));
            if (L > 4) acc = acc.add(acc.rearrange(SHIFT_4));
            if (L > 2) acc = acc.add(acc.rearrange(SHIFT_2));
            if (L > 1) acc = acc.add(acc.rearrange(SHIFT_1));
            s = acc.lane(0);
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
            // addLanes(acc) written out (see the class comment)
            if (L > 32) acc = acc.add(acc.rearrange(SHIFT_32));
            if (L > 16) acc = acc.add(acc.rearrange(SHIFT_16));
            if (L > 8) acc = acc.add(acc.rearrange(SHIFT_8));
            if (L > 4) acc = acc.add(acc.rearrange(SHIFT_4));
            if (L > 2) acc = acc.add(acc.rearrange(SHIFT_2));
            if (L > 1) acc = acc.add(acc.rearrange(SHIFT_1));
            s = acc.lane(0);
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
        return expShift(x, xo, null, 0, n, shift);
    }

    /** {@code y[yo+i] = exp(x[xo+i] - shift)}, returning the sum; y may be x (same offset). */
    static float expShiftStore(float[] x, int xo, float[] y, int yo, int n, float shift) {
        if (y == null) throw new IllegalArgumentException("y is null");
        return expShift(x, xo, y, yo, n, shift);
    }

    /**
     * The loop behind {@link #sumExp} and {@link #expShiftStore} (y null: store nothing). The body
     * of {@link #exp(FloatVector)} is written out here instead of called: once exp has a compiled
     * copy of its own, C2 declines to inline it into a large caller, and every vector passed to a
     * call that is not inlined is boxed on the heap (measured: megabytes per training step from
     * the attention softmax). Same formula and rounding as exp(FloatVector) and addLanes.
     */
    private static float expShift(float[] x, int xo, float[] y, int yo, int n, float shift) {
        int i = 0;
        float s = 0f;
        int bound = S.loopBound(n);
        if (bound > 0) {
            FloatVector sh = FloatVector.broadcast(S, shift);
            FloatVector acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                FloatVector v = FloatVector.fromArray(S, x, xo + i).sub(sh);
                var under = v.compare(VectorOperators.LT, EXP_LO);
                var over = v.compare(VectorOperators.GT, EXP_HI);
                FloatVector xc = v.max(EXP_LO).min(EXP_HI);
                FloatVector nv = xc.mul(LOG2E).add(ROUND).sub(ROUND);
                FloatVector r = nv.mul(-EXP_C1).add(xc);
                r = nv.mul(-EXP_C2).add(r);
                FloatVector z = r.mul(r);
                FloatVector p = r.mul(1.9875691500E-4f).add(1.3981999507E-3f).mul(r).add(8.3334519073E-3f).mul(r)
                        .add(4.1665795894E-2f).mul(r).add(1.6666665459E-1f).mul(r).add(5.0000001201E-1f)
                        .mul(z).add(r).add(1f);
                IntVector bits = ((IntVector) nv.convert(VectorOperators.F2I, 0)).add(127)
                        .lanewise(VectorOperators.LSHL, 23);
                FloatVector e = p.mul(bits.reinterpretAsFloats()).blend(0f, under)
                        .blend(Float.POSITIVE_INFINITY, over);
                if (y != null) e.intoArray(y, yo + i);
                acc = acc.add(e);
            }
            // addLanes(acc) written out too: this method is large enough that C2 stops inlining
            // calls in it (NodeCountInliningCutoff), which would box acc
            if (L > 32) acc = acc.add(acc.rearrange(SHIFT_32));
            if (L > 16) acc = acc.add(acc.rearrange(SHIFT_16));
            if (L > 8) acc = acc.add(acc.rearrange(SHIFT_8));
            if (L > 4) acc = acc.add(acc.rearrange(SHIFT_4));
            if (L > 2) acc = acc.add(acc.rearrange(SHIFT_2));
            if (L > 1) acc = acc.add(acc.rearrange(SHIFT_1));
            s = acc.lane(0);
        }
        for (; i < n; i++) {
            float e = exp(x[xo + i] - shift);
            if (y != null) y[yo + i] = e;
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
