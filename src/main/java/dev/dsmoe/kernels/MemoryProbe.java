package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Memory bandwidth probes in the manner of STREAM, the figures the mat-vec's GB/s is compared
 * against: all threads, each on its own contiguous slice of every array. {@link #readSum} reads
 * several arrays at once (several independent streams per thread, as a mat-vec over several
 * weight rows does: one stream per thread leaves the hardware prefetchers short of requests in
 * flight on some machines), {@link #copy} and {@link #triad} are STREAM's copy and triad.
 * Heap arrays; the caller sizes them past the caches.
 */
public final class MemoryProbe {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    private MemoryProbe() {}

    /** Sums {@code a} in parallel, one stream per thread (each thread a contiguous part); returns the sum. */
    public static double parallelSum(float[] a) {
        return readSum(a);
    }

    /**
     * Sums every element of the given arrays (1 to 4, of equal length), each thread reading its
     * slice of all of them in one loop: {@code arrays.length} streams per thread.
     */
    public static double readSum(float[]... arrays) {
        int k = arrays.length;
        if (k < 1 || k > 4) throw new IllegalArgumentException("1 to 4 arrays, got " + k);
        int n = arrays[0].length;
        for (float[] a : arrays) {
            if (a.length != n) throw new IllegalArgumentException("arrays of different lengths: " + n + " and " + a.length);
        }
        float[] a0 = arrays[0], a1 = k > 1 ? arrays[1] : a0, a2 = k > 2 ? arrays[2] : a0, a3 = k > 3 ? arrays[3] : a0;
        int t = Parallel.threads();
        double[] partial = new double[Math.max(1, t)];
        Parallel.forRange(t, (c0, c1) -> {
            for (int c = c0; c < c1; c++) partial[c] = sum(a0, a1, a2, a3, k, slice(n, c, t), slice(n, c + 1, t));
        });
        double s = 0;
        for (double p : partial) s += p;
        return s;
    }

    /** STREAM copy: {@code dst[i] = src[i]} in parallel. */
    public static void copy(float[] src, float[] dst) {
        int n = checkLengths(src, dst, dst);
        int t = Parallel.threads();
        Parallel.forRange(t, (c0, c1) -> {
            for (int c = c0; c < c1; c++) {
                int from = slice(n, c, t);
                System.arraycopy(src, from, dst, from, slice(n, c + 1, t) - from);
            }
        });
    }

    /** STREAM triad: {@code a[i] = b[i] + s·c[i]} in parallel. */
    public static void triad(float[] a, float[] b, float[] c, float s) {
        int n = checkLengths(a, b, c);
        int t = Parallel.threads();
        Parallel.forRange(t, (c0, c1) -> {
            for (int ch = c0; ch < c1; ch++) {
                int i = slice(n, ch, t), to = slice(n, ch + 1, t);
                FloatVector sv = FloatVector.broadcast(F, s);
                for (; i + L <= to; i += L) {
                    FloatVector.fromArray(F, c, i).fma(sv, FloatVector.fromArray(F, b, i)).intoArray(a, i);
                }
                for (; i < to; i++) a[i] = Math.fma(c[i], s, b[i]);
            }
        });
    }

    private static int checkLengths(float[] a, float[] b, float[] c) {
        if (a.length != b.length || a.length != c.length) throw new IllegalArgumentException("arrays of different lengths");
        return a.length;
    }

    private static int slice(int n, int c, int t) {
        return (int) ((long) n * c / t);
    }

    // The k arrays' elements [from, to) summed: two accumulators per stream, so each stream's
    // loads are independent of the adds (the loop is bound by the loads, not the add latency).
    private static double sum(float[] a0, float[] a1, float[] a2, float[] a3, int k, int from, int to) {
        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        int i = from;
        for (; i + 2 * L <= to; i += 2 * L) {
            s0 = s0.add(FloatVector.fromArray(F, a0, i));
            s1 = s1.add(FloatVector.fromArray(F, a0, i + L));
            if (k > 1) {
                s2 = s2.add(FloatVector.fromArray(F, a1, i));
                s3 = s3.add(FloatVector.fromArray(F, a1, i + L));
            }
            if (k > 2) {
                s4 = s4.add(FloatVector.fromArray(F, a2, i));
                s5 = s5.add(FloatVector.fromArray(F, a2, i + L));
            }
            if (k > 3) {
                s6 = s6.add(FloatVector.fromArray(F, a3, i));
                s7 = s7.add(FloatVector.fromArray(F, a3, i + L));
            }
        }
        double s = Simd.addLanes(s0.add(s1).add(s2.add(s3)).add(s4.add(s5).add(s6.add(s7))));
        for (; i < to; i++) {
            s += a0[i];
            if (k > 1) s += a1[i];
            if (k > 2) s += a2[i];
            if (k > 3) s += a3[i];
        }
        return s;
    }
}
