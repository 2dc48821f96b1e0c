package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * A plain memory-read bandwidth probe: sums a large float array with all threads, the figure
 * mat-vec's GB/s is compared against.
 */
public final class MemoryProbe {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    private MemoryProbe() {}

    /** Sums {@code a} in parallel (each thread a contiguous part); returns the sum. */
    public static double parallelSum(float[] a) {
        int t = Parallel.threads();
        double[] partial = new double[Math.max(1, t)];
        Parallel.forRange(t, (c0, c1) -> {
            for (int c = c0; c < c1; c++) {
                int from = (int) ((long) a.length * c / t), to = (int) ((long) a.length * (c + 1) / t);
                partial[c] = sum(a, from, to);
            }
        });
        double s = 0;
        for (double p : partial) s += p;
        return s;
    }

    private static double sum(float[] a, int from, int to) {
        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
        int l = F.length(), i = from;
        for (; i + 4 * l <= to; i += 4 * l) {
            s0 = s0.add(FloatVector.fromArray(F, a, i));
            s1 = s1.add(FloatVector.fromArray(F, a, i + l));
            s2 = s2.add(FloatVector.fromArray(F, a, i + 2 * l));
            s3 = s3.add(FloatVector.fromArray(F, a, i + 3 * l));
        }
        double s = s0.add(s1).add(s2.add(s3)).reduceLanes(VectorOperators.ADD);
        for (; i < to; i++) s += a[i];
        return s;
    }
}
