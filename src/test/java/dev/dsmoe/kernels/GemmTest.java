package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Checks both GEMM backends (pure Java and OpenBLAS) against a double-precision reference.
 *
 * <p>Tolerance, per element of C: {@code |c - ref| <= 1e-5 * (sum_k |alpha * a_ik * b_kj| +
 * |beta * c_old|) + 1e-6}, i.e. a relative error of 1e-5 of the magnitudes that were summed, which
 * float accumulation over k <= 600 comfortably meets and any indexing or transpose mistake breaks.
 *
 * <p>Every operand lives at a non-zero offset, with a leading dimension larger than its column
 * count, inside an array whose unused cells hold a sentinel; cells of C outside the {@code [m, n]}
 * window must come back unchanged.
 */
class GemmTest {

    private static final float SENTINEL = 12345.5f;

    /** (m, n, k): ones, odd sizes, non-multiples of 16 and of the 8 x 32 tile, several K blocks. */
    private static final int[][] SHAPES = {
            {1, 1, 1}, {1, 3, 17}, {3, 1, 5}, {1, 129, 1}, {129, 1, 3}, {3, 3, 3},
            {17, 17, 17}, {3, 129, 17}, {129, 3, 129}, {33, 47, 65}, {16, 32, 256},
            {9, 33, 513}, {40, 300, 200}, {257, 130, 300},
    };

    private static final float[] BETAS = {0f, 1f, 0.5f};

    static Gemm backend(String name) {
        return switch (name) {
            case "java" -> new JavaGemm();
            case "blas" -> BlasGemm.load();
            default -> throw new IllegalArgumentException(name);
        };
    }

    static Stream<Arguments> backendsAndTransposes() {
        Stream.Builder<Arguments> s = Stream.builder();
        for (String backend : new String[] {"java", "blas"}) {
            for (boolean tA : new boolean[] {false, true}) {
                for (boolean tB : new boolean[] {false, true}) {
                    s.add(Arguments.of(backend, tA, tB));
                }
            }
        }
        return s.build();
    }

    static Stream<String> backends() {
        return Stream.of("java", "blas");
    }

    @ParameterizedTest(name = "{0} transA={1} transB={2}")
    @MethodSource("backendsAndTransposes")
    void matchesDoubleReferenceOnOddShapesWithOffsetsStridesAlphaAndBeta(String backend, boolean tA, boolean tB) {
        Gemm gemm = backend(backend);
        SplittableRandom rnd = new SplittableRandom(42);
        for (int[] shape : SHAPES) {
            for (float beta : BETAS) {
                checkAgainstReference(gemm, tA, tB, shape[0], shape[1], shape[2], 1.5f, beta, false, rnd);
            }
        }
    }

    @ParameterizedTest(name = "{0} transA={1} transB={2}")
    @MethodSource("backendsAndTransposes")
    void betaZeroIgnoresNaNFilledC(String backend, boolean tA, boolean tB) {
        Gemm gemm = backend(backend);
        SplittableRandom rnd = new SplittableRandom(7);
        for (int[] shape : new int[][] {{1, 1, 1}, {17, 33, 9}, {129, 70, 257}, {20, 200, 64}}) {
            checkAgainstReference(gemm, tA, tB, shape[0], shape[1], shape[2], -0.75f, 0f, true, rnd);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void kZeroSetsCToBetaTimesC(String backend) {
        Gemm gemm = backend(backend);
        float[] a = {}, b = {};
        float[] c = {1f, 2f, SENTINEL, 3f, 4f, SENTINEL};
        gemm.sgemm(false, false, 2, 2, 0, 1f, a, 0, 1, b, 0, 2, 0.5f, c, 0, 3);
        assertEquals(Arrays.toString(new float[] {0.5f, 1f, SENTINEL, 1.5f, 2f, SENTINEL}), Arrays.toString(c));

        float[] nan = {Float.NaN, Float.NaN, SENTINEL, Float.NaN, Float.NaN, SENTINEL};
        gemm.sgemm(true, true, 2, 2, 0, 1f, a, 0, 2, b, 0, 1, 0f, nan, 0, 3);
        assertEquals(Arrays.toString(new float[] {0f, 0f, SENTINEL, 0f, 0f, SENTINEL}), Arrays.toString(nan));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void emptyMOrNLeavesCUntouched(String backend) {
        Gemm gemm = backend(backend);
        float[] a = {1f, 2f, 3f}, b = {4f, 5f, 6f};
        float[] c = {SENTINEL, SENTINEL, SENTINEL};
        gemm.sgemm(false, false, 0, 3, 1, 1f, a, 0, 1, b, 0, 3, 0f, c, 0, 3);
        gemm.sgemm(false, false, 3, 0, 1, 1f, a, 0, 1, b, 0, 1, 0f, c, 0, 1);
        assertEquals(Arrays.toString(new float[] {SENTINEL, SENTINEL, SENTINEL}), Arrays.toString(c));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void matmulHelpersComputeTheThreeTrainingFormsAndAccumulate(String backend) {
        Gemm gemm = backend(backend);
        int m = 37, n = 45, k = 70;
        SplittableRandom rnd = new SplittableRandom(3);
        float[] a = random(m * k, rnd), at = transpose(a, m, k);   // A [m,k] and its [k,m] copy
        float[] b = random(k * n, rnd), bt = transpose(b, k, n);   // B [k,n] and its [n,k] copy
        double[] ref = new double[m * n];
        double[] mag = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                for (int p = 0; p < k; p++) {
                    ref[i * n + j] += (double) a[i * k + p] * b[p * n + j];
                    mag[i * n + j] += Math.abs((double) a[i * k + p] * b[p * n + j]);
                }
            }
        }
        float[] c1 = new float[m * n], c2 = new float[m * n], c3 = new float[m * n];
        gemm.matmul(a, b, c1, m, n, k, false);
        gemm.matmulTransB(a, bt, c2, m, n, k, false);
        gemm.matmulTransA(at, b, c3, m, n, k, false);
        // A second call with accumulate = true must double the result.
        gemm.matmul(a, b, c1, m, n, k, true);
        gemm.matmulTransB(a, bt, c2, m, n, k, true);
        gemm.matmulTransA(at, b, c3, m, n, k, true);
        for (int x = 0; x < m * n; x++) {
            double tol = 1e-5 * 2 * mag[x] + 1e-6;
            for (float[] c : new float[][] {c1, c2, c3}) {
                if (Math.abs(c[x] - 2 * ref[x]) > tol) {
                    fail(backend + ": element " + x + " is " + c[x] + ", expected " + 2 * ref[x]);
                }
            }
        }
    }

    /** B in a native segment at an odd byte offset gives the array form's result, bit for bit. */
    @ParameterizedTest(name = "{0} transA={1} transB={2}")
    @MethodSource("backendsAndTransposes")
    void segmentFormEqualsTheArrayFormBitForBit(String backend, boolean tA, boolean tB) {
        Gemm gemm = backend(backend);
        SplittableRandom rnd = new SplittableRandom(5);
        for (int[] shape : new int[][] {{1, 7, 5}, {9, 300, 40}, {129, 70, 257}, {40, 300, 200}}) {
            int m = shape[0], n = shape[1], k = shape[2];
            Stored a = tA ? store(k, m, rnd, false) : store(m, k, rnd, false);
            Stored b = tB ? store(n, k, rnd, false) : store(k, n, rnd, false);
            Stored c = store(m, n, rnd, false);
            float[] c2 = c.data().clone();
            gemm.sgemm(tA, tB, m, n, k, 1f, a.data(), a.off(), a.ld(), b.data(), b.off(), b.ld(), 1f, c.data(), c.off(), c.ld());
            try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared()) {
                java.lang.foreign.MemorySegment seg = arena.allocate(4L * b.data().length + 2);
                java.lang.foreign.MemorySegment.copy(b.data(), 0, seg, java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED
                        .withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 2, b.data().length);
                gemm.sgemm(tA, tB, m, n, k, 1f, a.data(), a.off(), a.ld(), seg, 2 + 4L * b.off(), b.ld(), 1f, c2, c.off(), c.ld());
            }
            if (!Arrays.equals(c.data(), c2)) fail(backend + " " + Arrays.toString(shape) + ": the segment form differs");
        }
        float[] ok = new float[16];
        assertThrows(IllegalArgumentException.class, () -> gemm.sgemm(false, false, 4, 4, 4, 1f, ok, 0, 4,
                java.lang.foreign.MemorySegment.ofArray(new float[15]), 0, 4, 0f, ok, 0, 4));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void rejectsOperandsThatDoNotFitTheirArrays(String backend) {
        Gemm gemm = backend(backend);
        float[] small = new float[5], ok = new float[16];
        assertThrows(IllegalArgumentException.class,
                () -> gemm.sgemm(false, false, 4, 4, 4, 1f, small, 0, 4, ok, 0, 4, 0f, ok, 0, 4));
        assertThrows(IllegalArgumentException.class,
                () -> gemm.sgemm(false, false, 4, 4, 4, 1f, ok, 0, 3, ok, 0, 4, 0f, ok, 0, 4));
    }

    // ---------------------------------------------------------------------------------------------

    /** A matrix stored at an offset with a padded leading dimension; unused cells hold SENTINEL. */
    private record Stored(float[] data, int off, int ld) {
        float at(int r, int col) {
            return data[off + r * ld + col];
        }
    }

    private static Stored store(int rows, int cols, SplittableRandom rnd, boolean nan) {
        int off = 1 + rnd.nextInt(7);
        int ld = cols + 1 + rnd.nextInt(5);
        float[] data = new float[off + Math.max(0, rows - 1) * ld + cols + 3];
        Arrays.fill(data, SENTINEL);
        for (int r = 0; r < rows; r++) {
            for (int col = 0; col < cols; col++) {
                data[off + r * ld + col] = nan ? Float.NaN : (float) (rnd.nextDouble() * 2 - 1);
            }
        }
        return new Stored(data, off, ld);
    }

    private static void checkAgainstReference(Gemm gemm, boolean tA, boolean tB, int m, int n, int k,
                                              float alpha, float beta, boolean nanC, SplittableRandom rnd) {
        Stored a = tA ? store(k, m, rnd, false) : store(m, k, rnd, false);
        Stored b = tB ? store(n, k, rnd, false) : store(k, n, rnd, false);
        Stored c = store(m, n, rnd, nanC);
        float[] cOld = c.data().clone();

        gemm.sgemm(tA, tB, m, n, k, alpha, a.data(), a.off(), a.ld(), b.data(), b.off(), b.ld(),
                beta, c.data(), c.off(), c.ld());

        String where = gemm.name() + " transA=" + tA + " transB=" + tB + " m=" + m + " n=" + n + " k=" + k
                + " alpha=" + alpha + " beta=" + beta + (nanC ? " (C was NaN)" : "");
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double sum = 0, mag = 0;
                for (int p = 0; p < k; p++) {
                    double prod = (double) (tA ? a.at(p, i) : a.at(i, p)) * (tB ? b.at(j, p) : b.at(p, j));
                    sum += prod;
                    mag += Math.abs(prod);
                }
                int ci = c.off() + i * c.ld() + j;
                double old = beta == 0f ? 0 : (double) beta * cOld[ci];
                double ref = alpha * sum + old;
                double tol = 1e-5 * (Math.abs(alpha) * mag + Math.abs(old)) + 1e-6;
                float got = c.data()[ci];
                if (!(Math.abs(got - ref) <= tol)) {
                    fail(where + ": C[" + i + "," + j + "] = " + got + ", expected " + ref + " +- " + tol);
                }
                cOld[ci] = got;   // mark as checked so the comparison below sees only outside cells
            }
        }
        if (!Arrays.equals(cOld, c.data())) {
            fail(where + ": wrote outside the C window (offset/leading-dimension padding changed)");
        }
    }

    private static float[] random(int size, SplittableRandom rnd) {
        float[] x = new float[size];
        for (int i = 0; i < size; i++) x[i] = (float) (rnd.nextDouble() * 2 - 1);
        return x;
    }

    private static float[] transpose(float[] x, int rows, int cols) {
        float[] t = new float[x.length];
        for (int r = 0; r < rows; r++) {
            for (int col = 0; col < cols; col++) t[col * rows + r] = x[r * cols + col];
        }
        return t;
    }
}
