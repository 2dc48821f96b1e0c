package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorSpecies;

/**
 * Global L2 norm of a flat (gradient) buffer and in-place scaling for norm clipping.
 *
 * <p>The sum of squares is accumulated in double: the buffer is cut into {@value #PARTS} fixed
 * parts (independent of the thread count), each part widens its floats to double vectors and
 * sums their squares in double lanes, and the parts are added in order. The result is therefore the same bitwise for any
 * thread count.
 */
public final class GradNorm {

    static final int PARTS = 64;
    /**
     * Doubles per vector, and floats of the same shape (twice the lanes: each float vector widens
     * to two double vectors). Only the preferred float shape is used: a second one (a half-width
     * species, as this class once had) puts a second vector class into the JIT's type profiles
     * inside the Vector API's shared methods, and inference kernels compiled after a training run
     * then lost their intrinsics (the quickstart's MoE decode ran at 0.1-0.5x its speed).
     */
    private static final VectorSpecies<Double> DS = DoubleVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Float> FS = FloatVector.SPECIES_PREFERRED;
    private static final int HALF = DS.length();
    /** The first {@link #HALF} float lanes: the last half vector of a part. */
    private static final VectorMask<Float> FIRST_HALF = FS.indexInRange(0, HALF);
    private static final ThreadLocal<double[]> PARTIALS = ThreadLocal.withInitial(() -> new double[PARTS]);

    private GradNorm() {}

    /** {@code sum_i g[off+i]^2}, accumulated in double. */
    public static double sumOfSquares(float[] g, int off, int n) {
        Simd.checkRange("g", g, off, n);
        double[] partials = PARTIALS.get();
        int parts = n < Simd.MIN_CHUNK ? 1 : PARTS;
        Parallel.forRange(parts, 1, (p0, p1) -> {
            for (int part = p0; part < p1; part++) {
                int s = (int) ((long) n * part / parts), e = (int) ((long) n * (part + 1) / parts);
                partials[part] = sumSquaresDouble(g, off + s, e - s);
            }
        });
        double total = 0;
        for (int part = 0; part < parts; part++) total += partials[part];
        return total;
    }

    /** {@code sqrt(sumOfSquares)}. */
    public static double norm(float[] g, int off, int n) {
        return Math.sqrt(sumOfSquares(g, off, n));
    }

    /** {@code g[off+i] *= factor}. */
    public static void scale(float[] g, int off, int n, float factor) {
        Simd.checkRange("g", g, off, n);
        Parallel.forRange(n, Simd.MIN_CHUNK, (s, e) -> Simd.scale(g, off + s, g, off + s, e - s, factor));
    }

    /**
     * Clips like {@code torch.nn.utils.clip_grad_norm_}: with {@code norm} the global norm, scales
     * g by {@code maxNorm / (norm + 1e-6)} when that factor is below 1. Returns the norm before
     * clipping. A NaN or infinite norm is returned as it is and g is left unscaled, so the
     * caller can detect it and skip the step.
     */
    public static double clip(float[] g, int off, int n, double maxNorm) {
        double norm = norm(g, off, n);
        double coef = maxNorm / (norm + 1e-6);
        if (Double.isFinite(norm) && coef < 1.0) scale(g, off, n, (float) coef);
        return norm;
    }

    /** Clipping factor {@code min(1, maxNorm / (norm + 1e-6))}, for callers that fold it elsewhere. */
    public static double clipFactor(double norm, double maxNorm) {
        double coef = maxNorm / (norm + 1e-6);
        return coef < 1.0 ? coef : 1.0;
    }

    private static double sumSquaresDouble(float[] g, int off, int n) {
        int i = 0;
        double total = 0;
        // Lane j sums elements j, j + HALF, j + 2 HALF, ... in that order, then the lanes are added.
        int bound = n - n % HALF;
        if (bound > 0) {
            DoubleVector acc = DoubleVector.zero(DS);
            for (; i + FS.length() <= bound; i += FS.length()) {
                FloatVector f = FloatVector.fromArray(FS, g, off + i);
                DoubleVector lo = (DoubleVector) f.convertShape(VectorOperators.F2D, DS, 0);
                DoubleVector hi = (DoubleVector) f.convertShape(VectorOperators.F2D, DS, 1);
                acc = lo.fma(lo, acc);
                acc = hi.fma(hi, acc);
            }
            if (i < bound) {
                DoubleVector lo = (DoubleVector) FloatVector.fromArray(FS, g, off + i, FIRST_HALF)
                        .convertShape(VectorOperators.F2D, DS, 0);
                acc = lo.fma(lo, acc);
                i += HALF;
            }
            // Lanes summed in index order: reduceLanes' order differs between compiled and interpreted code.
            for (double lane : acc.toArray()) total += lane;
        }
        for (; i < n; i++) {
            double x = g[off + i];
            total += x * x;
        }
        return total;
    }
}
