package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Inference's large products through oneDNN ({@link OneDnn}) against double-precision sums: fp32
 * weights exactly as fp32, bf16 and Q8_0 weights with the input rounded to bf16 (and a Q8_0 weight's
 * values rounded to bf16), as the class documents; overwrite and accumulate; row counts that are
 * not a multiple of the primitive's row step, column counts across and inside a chunk, strided
 * inputs and outputs. CI installs oneDNN ({@code .ci/run}); elsewhere the test says it is skipped.
 */
class OneDnnTest {

    @BeforeAll
    static void library() {
        requireOrSkip();
    }

    /**
     * Fails when oneDNN is installed but does not bind (or is missing in CI); skips the calling
     * test where it is not installed. Shared by the tests of the kernels that need it.
     */
    static void requireOrSkip() {
        if (System.getenv("CI") != null) assertNotNull(OneDnn.get(), "oneDNN must load in CI: " + OneDnn.unavailableReason());
        String why = OneDnn.unavailableReason();
        if (why != null && !why.contains(OneDnn.NOT_INSTALLED) && !why.startsWith("switched off")) {
            throw new AssertionError("oneDNN is installed but did not bind: " + why);
        }
        assumeTrue(OneDnn.get() != null, "skipped: oneDNN unavailable (" + why + "); apt-get install libdnnl2");
    }

    @Test
    void roundsToBf16AsTheScalarConversion() {
        float[] x = {1f, -1f, 1.00390625f, 1.0078125f, 1.01171875f, 3.4e38f, Float.POSITIVE_INFINITY,
                Float.NEGATIVE_INFINITY, Float.NaN, -0f, 1e-40f, 0.1f, -0.3f, 65504f, 2.5e-10f, 7f, 1.5f, -2.75f,
                Float.intBitsToFloat(0x3f808000), Float.intBitsToFloat(0x3f818000), Float.intBitsToFloat(0x7f7fffff)};
        SplittableRandom r = new SplittableRandom(3);
        float[] all = new float[x.length + 100];
        System.arraycopy(x, 0, all, 0, x.length);
        for (int i = x.length; i < all.length; i++) all[i] = Float.intBitsToFloat(r.nextInt());
        MemorySegment out = Arena.ofAuto().allocate(2L * all.length);
        OneDnn.toBf16(all, 0, all.length, out, 0);
        for (int i = 0; i < all.length; i++) {
            short got = out.get(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 2L * i);
            assertEquals(Bf16.fromFloat(all[i]), got, "bf16 of " + all[i] + " (bits " + Integer.toHexString(Float.floatToRawIntBits(all[i])) + ")");
        }
    }

    @Test
    void productsMatchDoubleSumsInEveryFormat() {
        // {m, n, k}: rows past the mat-vec limit: two row steps, a partial one, a chunk and a bit, a tail of k past the lane and Q8_0 blocks
        int[][] shapes = {{9, 70, 64}, {16, 256, 96}, {37, 300, 100}, {130, 513, 256}, {17, 40, 33}};
        SplittableRandom rnd = new SplittableRandom(5);
        for (int[] s : shapes) {
            int m = s[0], n = s[1], k = s[2];
            float[] w = TestArrays.uniform(rnd, n * k, 1.0);
            for (MatVec.DType dt : MatVec.DType.values()) {
                MemorySegment seg = dt.write(Arena.ofAuto(), w, n, k); // native: the path oneDNN takes
                TensorView view = dt.view(seg, 0, n, k);
                float[] wq = new float[n * k];
                for (int r = 0; r < n; r++) view.copyRow(r, wq, r * k);
                boolean bf16 = roundsToBf16(dt);
                if (bf16) for (int i = 0; i < wq.length; i++) wq[i] = Bf16.toFloat(Bf16.fromFloat(wq[i]));
                for (boolean accumulate : new boolean[] {false, true}) {
                    check(dt + " [" + m + " x " + k + "] x [" + n + " x " + k + "]ᵀ" + (accumulate ? " +=" : ""),
                            view, wq, m, n, k, bf16, accumulate, rnd);
                }
            }
        }
    }

    /**
     * {@link Matmul#groupedRuns}: rows gathered from the input by a row list (a shared identity part
     * and listed rows), scattered to output rows or added into shared rows in group order, experts
     * stacked along the rows and side by side along the columns, every format, against double sums.
     */
    @Test
    void groupedProductsGatherAndScatterTheirRows() {
        SplittableRandom rnd = new SplittableRandom(9);
        int experts = 3, k = 64;
        // {n, tokens}: one block; short groups in wide blocks (1024 and a partial one); long groups in CHUNK blocks
        for (int[] shape : new int[][] {{300, 20}, {OneDnn.WIDE_CHUNK + 276, 20}, {2 * OneDnn.CHUNK + 88, 600}}) {
        int n = shape[0], tokens = shape[1];
        for (boolean columns : new boolean[] {false, true}) {
            float[] w = TestArrays.uniform(rnd, experts * n * k, 1.0);
            for (MatVec.DType dt : MatVec.DType.values()) {
                if (columns && dt == MatVec.DType.Q8_0) continue; // Q8_0 views slice whole rows only
                // stacked: [experts·n, k]; side by side: [n, experts·k], expert e its columns
                int rows = columns ? n : experts * n, cols = columns ? experts * k : k;
                MemorySegment seg = dt.write(Arena.ofAuto(), w, rows, cols);
                TensorView all = dt.view(seg, 0, rows, cols);
                TensorView view = columns ? all.expertColumns(experts) : all.stackedExperts(experts);
                float[] wq = new float[w.length];
                for (int r = 0; r < rows; r++) all.copyRow(r, wq, r * cols);
                boolean bf16 = roundsToBf16(dt);
                if (bf16) for (int i = 0; i < wq.length; i++) wq[i] = Bf16.toFloat(Bf16.fromFloat(wq[i]));
                String what = dt + (columns ? " experts side by side" : " stacked experts") + ", n " + n + ", " + tokens + " tokens";
                float[] x = TestArrays.uniform(rnd, tokens * k, 1.0);
                // groups: expert 0 reads all tokens (the identity part), expert 2 a listed subset, expert 1 none, expert 2 again one row
                int[] expert = {0, 1, 2, 2};
                int[] srcRows = new int[tokens + 12];
                for (int t = 0; t < tokens; t++) srcRows[t] = t;
                int[] subset = {1, 4, 5, 6, 9, 11, 12, 13, 17, 19};
                System.arraycopy(subset, 0, srcRows, tokens, subset.length);
                srcRows[tokens + subset.length] = 7;
                int listed = tokens + subset.length + 1;
                int[] inStart = {0, 0, tokens, tokens + subset.length}, count = {tokens, 0, subset.length, 1};
                // overwrite into grouped rows (row r of the output for the r-th product row)
                int outRows = tokens + subset.length + 1;
                int[] outStart = {0, 0, tokens, tokens + subset.length};
                float[] y = TestArrays.uniform(rnd, outRows * n, 1.0);
                Matmul.forInference().groupedRuns(F32Tensor.of(y, outRows, n), F32Tensor.of(x, tokens, k), view, 4, expert, srcRows,
                        listed, inStart, count, null, outStart, false, false);
                for (int p = 0; p < 4; p++) {
                    for (int i = 0; i < count[p]; i++) {
                        int src = srcRows[inStart[p] + i], out = outStart[p] + i;
                        for (int j = 0; j < n; j++) {
                            double[] e = dot(x, src, k, wq, expert[p], j, columns, n, cols, bf16);
                            assertClose(what + " group " + p + " row " + i + " col " + j, e, y[out * n + j]);
                        }
                    }
                }
                // the same products added into token rows, groups sharing rows (expert order)
                float[] acc = TestArrays.uniform(rnd, tokens * n, 1.0), before = acc.clone();
                int[] outRow = srcRows.clone(); // product row i of a group goes back to its token
                Matmul.forInference().groupedRuns(F32Tensor.of(acc, tokens, n), F32Tensor.of(x, tokens, k), view, 4, expert, srcRows,
                        listed, inStart, count, outRow, inStart, true, true);
                for (int t = 0; t < tokens; t++) {
                    for (int j = 0; j < n; j++) {
                        double sum = before[t * n + j], abs = Math.abs(sum);
                        for (int p = 0; p < 4; p++) {
                            for (int i = 0; i < count[p]; i++) {
                                if (srcRows[inStart[p] + i] != t) continue;
                                double[] e = dot(x, t, k, wq, expert[p], j, columns, n, cols, bf16);
                                sum += e[0];
                                abs += e[1];
                            }
                        }
                        assertClose(what + " shared, token " + t + " col " + j, new double[] {sum, abs}, acc[t * n + j]);
                    }
                }
                // every expert over all the tokens (a prompt chunk's MoA): consecutive groups with the same rows sum in oneDNN
                float[] all3 = TestArrays.uniform(rnd, tokens * n, 1.0), before3 = all3.clone();
                Matmul.forInference().groupedRuns(F32Tensor.of(all3, tokens, n), F32Tensor.of(x, tokens, k), view, 3,
                        new int[] {0, 1, 2}, null, tokens, new int[3], new int[] {tokens, tokens, tokens}, null, new int[3], true, true);
                for (int t = 0; t < tokens; t++) {
                    for (int j = 0; j < n; j++) {
                        double sum = before3[t * n + j], abs = Math.abs(sum);
                        for (int e = 0; e < 3; e++) {
                            double[] d = dot(x, t, k, wq, e, j, columns, n, cols, bf16);
                            sum += d[0];
                            abs += d[1];
                        }
                        assertClose(what + " all experts, token " + t + " col " + j, new double[] {sum, abs}, all3[t * n + j]);
                    }
                }
            }
        }
        }
    }

    /**
     * The width of the column blocks a call is cut into changes no output bit (what lets it depend
     * on the rows and the thread count): the first 256 columns of a 1300-column product (blocks of
     * {@link OneDnn#WIDE_CHUNK} for 20 rows, {@link OneDnn#CHUNK} for 200) equal those of the same
     * 256 weight rows alone (cut narrower so that both threads get a block), in every format.
     */
    @Test
    void blockWidthChangesNoBits() {
        SplittableRandom rnd = new SplittableRandom(11);
        int n = 1300, part = 256, k = 200;
        float[] w = TestArrays.uniform(rnd, n * k, 1.0);
        for (MatVec.DType dt : MatVec.DType.values()) {
            TensorView whole = dt.view(dt.write(Arena.ofAuto(), w, n, k), 0, n, k);
            TensorView first = dt.view(dt.write(Arena.ofAuto(), java.util.Arrays.copyOf(w, part * k), part, k), 0, part, k);
            for (int m : new int[] {20, 200}) {
                float[] x = TestArrays.uniform(rnd, m * k, 1.0), yWhole = new float[m * n], yFirst = new float[m * part];
                Matmul.forInference().forward(F32Tensor.of(yWhole, m, n), F32Tensor.of(x, m, k), m, whole, false);
                Matmul.forInference().forward(F32Tensor.of(yFirst, m, part), F32Tensor.of(x, m, k), m, first, false);
                for (int i = 0; i < m; i++) {
                    for (int j = 0; j < part; j++) {
                        assertEquals(Float.floatToRawIntBits(yWhole[i * n + j]), Float.floatToRawIntBits(yFirst[i * part + j]),
                                dt + ", " + m + " rows: row " + i + " column " + j);
                    }
                }
            }
        }
    }

    /**
     * oneDNN loads for fp32 on every x86 CPU, and reports whether it has bf16 products: an AVX2 CPU
     * (AMD Zen 3) has none, and the library had failed to load there as a whole (its bf16 probe
     * primitive unimplemented), which left prompts on unpack + sgemm. bf16 and Q8_0 weights are
     * then unpacked to fp32 (the other tests check those products against fp32 sums there).
     */
    @Test
    void loadsWithOrWithoutBf16Products() {
        OneDnn d = OneDnn.get();
        assertTrue(OneDnn.describe().contains("fp32: "), OneDnn.describe());
        assertEquals(d.bf16(), !d.kernelNames().endsWith("none on this CPU"), d.kernelNames());
        float[] w = TestArrays.uniform(new SplittableRandom(13), 64 * 64, 1.0);
        assertFalse(OneDnn.reads(F32Tensor.of(w, 64, 64)), "a heap fp32 weight");
        for (MatVec.DType dt : MatVec.DType.values()) {
            assertTrue(OneDnn.reads(dt.view(dt.write(Arena.ofAuto(), w, 64, 64), 0, 64, 64)), dt + " in native memory");
        }
    }

    /** Whether oneDNN multiplies weights of this type in bf16: bf16 and Q8_0 where the CPU has bf16 products, else unpacked to fp32. */
    private static boolean roundsToBf16(MatVec.DType dt) {
        return dt != MatVec.DType.F32 && OneDnn.get().bf16();
    }

    /** {sum, sum of magnitudes} of input row {@code t} times row j of expert e (inputs rounded to bf16 when {@code bf16}). */
    private static double[] dot(float[] x, int t, int k, float[] wq, int e, int j, boolean columns, int n, int cols, boolean bf16) {
        double sum = 0, abs = 0;
        for (int c = 0; c < k; c++) {
            float xv = x[t * k + c];
            if (bf16) xv = Bf16.toFloat(Bf16.fromFloat(xv));
            float wv = columns ? wq[j * cols + e * k + c] : wq[(e * n + j) * cols + c];
            sum += (double) xv * wv;
            abs += Math.abs((double) xv * wv);
        }
        return new double[] {sum, abs};
    }

    private static void assertClose(String what, double[] expected, float got) {
        double tol = 1e-6 * expected[1] + 1e-6;
        if (Math.abs(got - expected[0]) > tol) throw new AssertionError(what + ": " + got + ", expected " + expected[0] + " within " + tol);
    }

    /** Through {@link Matmul#forward} of an inference instance: rows past the mat-vec limit go to oneDNN. */
    private static void check(String what, TensorView w, float[] wq, int m, int n, int k, boolean bf16, boolean accumulate,
                              SplittableRandom rnd) {
        int ldx = k + 3, ldy = n + 5; // strided rows on both sides
        float[] x = TestArrays.uniform(rnd, m * ldx, 1.0);
        float[] y = TestArrays.uniform(rnd, m * ldy, 1.0);
        double[] expected = new double[m * n];
        double[] scale = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double sum = accumulate ? y[i * ldy + j] : 0, abs = Math.abs(sum);
                for (int c = 0; c < k; c++) {
                    float xv = x[i * ldx + c];
                    if (bf16) xv = Bf16.toFloat(Bf16.fromFloat(xv));
                    sum += (double) xv * wq[j * k + c];
                    abs += Math.abs((double) xv * wq[j * k + c]);
                }
                expected[i * n + j] = sum;
                scale[i * n + j] = abs;
            }
        }
        TensorView in = F32Tensor.of(x, 0, m, ldx).slice(0, m, k, ldx);
        TensorView out = F32Tensor.of(y, 0, m, ldy).slice(0, m, n, ldy);
        float[] before = y.clone();
        Matmul.forInference().forward(out, in, m, w, accumulate);
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < ldy; j++) {
                float got = y[i * ldy + j];
                if (j >= n) {
                    assertEquals(before[i * ldy + j], got, what + ": column " + j + " past the output was written");
                    continue;
                }
                double e = expected[i * n + j], tol = 1e-6 * scale[i * n + j] + 1e-6;
                if (Math.abs(got - e) > tol) {
                    throw new AssertionError(what + ": y[" + i + ", " + j + "] = " + got + ", expected " + e + " within " + tol);
                }
            }
        }
    }
}
