package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
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
        boolean ci = System.getenv("CI") != null;
        if (ci) assertNotNull(OneDnn.get(), "oneDNN must load in CI: " + OneDnn.unavailableReason());
        assumeTrue(OneDnn.get() != null, "skipped: oneDNN unavailable (" + OneDnn.unavailableReason()
                + "); apt-get install libdnnl2");
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
                boolean bf16 = dt != MatVec.DType.F32;
                if (bf16) for (int i = 0; i < wq.length; i++) wq[i] = Bf16.toFloat(Bf16.fromFloat(wq[i]));
                for (boolean accumulate : new boolean[] {false, true}) {
                    check(dt + " [" + m + " x " + k + "] x [" + n + " x " + k + "]ᵀ" + (accumulate ? " +=" : ""),
                            view, wq, m, n, k, bf16, accumulate, rnd);
                }
            }
        }
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
