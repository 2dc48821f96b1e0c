package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Q8_0 weights: quantization (per block of 32 along a row, scale = max|w|/127, the short last
 * block of a row included) and the mat-vec, selected-expert and GEMM paths against double
 * products of the dequantized weights.
 */
class Q8TensorTest {

    /** Row lengths: whole blocks, a short last block, shorter than one block. */
    private static final int[] COLS = {64, 96, 70, 37, 5};

    private static double[] dequantized(Q8Tensor q) {
        double[] d = new double[q.rows() * q.cols()];
        for (int r = 0; r < q.rows(); r++) {
            for (int c = 0; c < q.cols(); c++) d[r * q.cols() + c] = (double) q.scale(r, c / Q8Tensor.BLOCK) * q.quant(r, c);
        }
        return d;
    }

    @Test
    void roundTripErrorIsAtMostHalfAScalePerWeight() {
        SplittableRandom rnd = new SplittableRandom(5);
        for (int cols : COLS) {
            int rows = 9;
            float[] w = TestArrays.uniform(rnd, rows * cols, 3.0);
            for (int c = 0; c < Math.min(cols, Q8Tensor.BLOCK); c++) w[2 * cols + c] = 0f; // an all-zero block
            w[4 * cols] = 1e-3f; // a block whose largest weight is the one given
            Q8Tensor q = Q8Tensor.quantize(Arena.ofAuto(), w, rows, cols);
            float[] row = new float[cols];
            for (int r = 0; r < rows; r++) {
                q.copyRow(r, row, 0);
                for (int b = 0; b < q.blocksPerRow(); b++) {
                    float max = 0f;
                    for (int c = b * 32; c < Math.min(cols, b * 32 + 32); c++) max = Math.max(max, Math.abs(w[r * cols + c]));
                    assertEquals(max / 127f, q.scale(r, b), 0, "scale of row " + r + " block " + b);
                }
                for (int c = 0; c < cols; c++) {
                    float s = q.scale(r, c / 32);
                    int qv = q.quant(r, c);
                    assertTrue(qv >= -127 && qv <= 127);
                    double err = Math.abs(w[r * cols + c] - (double) s * qv);
                    assertTrue(err <= s / 2 * (1 + 1e-5) + 1e-30, cols + " cols, [" + r + ", " + c + "]: error " + err + ", scale " + s);
                    assertEquals(s * qv, row[c], 0, "copyRow");
                }
            }
            float[] zero = new float[cols];
            q.copyRow(2, zero, 0);
            for (int c = 0; c < Math.min(cols, 32); c++) assertEquals(0f, zero[c]);
        }
    }

    /**
     * The bf16 rows oneDNN multiplies (a prompt chunk's q8_0 products) are the dequantized values
     * rounded by {@link Bf16#fromFloat}, bit for bit: whole blocks, a short last block, and blocks
     * whose scale is NaN or infinite (the conversion's scalar case) among finite ones.
     */
    @Test
    void bf16RowsAreTheDequantizedValuesRoundedToBf16() {
        SplittableRandom rnd = new SplittableRandom(8);
        ValueLayout.OfShort bf16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (int cols : COLS) {
            int rows = 6;
            float[] w = TestArrays.uniform(rnd, rows * cols, 3.0);
            Q8Tensor q = Q8Tensor.quantize(Arena.ofAuto(), w, rows, cols);
            ValueLayout.OfFloat scale = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
            int nb = q.blocksPerRow();
            q.segment().set(scale, q.scaleByteOffset() + 4L * (2 * nb + nb / 2), Float.NaN); // row 2: its middle block's
            q.segment().set(scale, q.scaleByteOffset() + 4L * (4 * nb), Float.POSITIVE_INFINITY); // row 4: its first block's
            MemorySegment out = Arena.ofAuto().allocate(2L * rows * cols);
            q.bf16Rows().write(0, rows, out);
            float[] row = new float[cols];
            for (int r = 0; r < rows; r++) {
                q.copyRow(r, row, 0);
                for (int c = 0; c < cols; c++) {
                    assertEquals(Bf16.fromFloat(row[c]), out.get(bf16, 2L * (r * cols + c)), cols + " cols, [" + r + ", " + c + "]: " + row[c]);
                }
            }
        }
    }

    @Test
    void matVecOfOneAndSeveralRowsMatchesTheDequantizedWeights() {
        SplittableRandom rnd = new SplittableRandom(6);
        for (int cols : COLS) {
            int rows = 150; // over ROW_GRAIN: split over threads
            float[] w = TestArrays.uniform(rnd, rows * cols, 1.0);
            Q8Tensor q = Q8Tensor.quantize(Arena.ofAuto(), w, rows, cols);
            double[] wd = dequantized(q);
            for (int m : new int[] {1, 2, 3, 4, 6}) {
                float[] x = TestArrays.uniform(rnd, m * cols, 1.0);
                int ldy = rows + 2;
                float[] y = new float[m * ldy];
                java.util.Arrays.fill(y, 0.25f);
                for (boolean acc : new boolean[] {false, true}) {
                    float[] yy = y.clone();
                    q.matVec(x, 0, m, yy, 0, ldy, acc);
                    double[] ref = new double[m * ldy];
                    for (int i = 0; i < m; i++) {
                        for (int r = 0; r < rows; r++) {
                            double s = acc ? 0.25 : 0;
                            for (int c = 0; c < cols; c++) s += wd[r * cols + c] * x[i * cols + c];
                            ref[i * ldy + r] = s;
                        }
                    }
                    for (int i = 0; i < m; i++) {
                        for (int r = 0; r < rows; r++) {
                            double e = ref[i * ldy + r];
                            assertEquals(e, yy[i * ldy + r], 1e-5 * (1 + Math.abs(e)), cols + " cols, m=" + m + ", acc " + acc + ", [" + i + ", " + r + "]");
                        }
                    }
                }
            }
        }
    }

    @Test
    void selectedExpertsAndGemmMatchTheMatVec() {
        SplittableRandom rnd = new SplittableRandom(7);
        int experts = 4, rows = 40, cols = 70;
        float[] w = TestArrays.uniform(rnd, experts * rows * cols, 1.0);
        TensorView weights = MatVec.DType.Q8_0.view(MatVec.DType.Q8_0.write(Arena.ofAuto(), w, experts * rows, cols), 0,
                experts * rows, cols).stackedExperts(experts);
        double[] wd = dequantized((Q8Tensor) weights);
        int[] chosen = {3, 1};
        float[] x = TestArrays.uniform(rnd, 2 * cols, 1.0);
        float[] y = new float[2 * rows], ySum = new float[rows];
        weights.matVecSelected(chosen, 0, 2, x, 0, y, 0);
        weights.matVecSelectedSum(chosen, 0, 2, x, 0, ySum, 0, false);
        for (int i = 0; i < 2; i++) {
            for (int r = 0; r < rows; r++) {
                double a = 0;
                for (int c = 0; c < cols; c++) {
                    double wv = wd[(chosen[i] * rows + r) * cols + c];
                    a += wv * x[c];
                }
                assertEquals(a, y[i * rows + r], 1e-5 * (1 + Math.abs(a)), "selected " + i + ", row " + r);
            }
        }
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int i = 0; i < 2; i++) {
                for (int c = 0; c < cols; c++) s += wd[(chosen[i] * rows + r) * cols + c] * x[i * cols + c];
            }
            assertEquals(s, ySum[r], 1e-5 * (1 + Math.abs(s)), "selected sum, row " + r);
        }
        // GEMM (dequantized panels) against the mat-vec, through expert 2
        int m = 20;
        float[] xs = TestArrays.uniform(rnd, m * cols, 1.0), g = new float[m * rows], ref = new float[m * rows];
        Matmul.forInference(Matmul.MATVEC_MAX_ROWS, false).forward(F32Tensor.of(g, m, rows), 0, F32Tensor.of(xs, m, cols), 0, m, weights.expert(2), false);
        weights.expert(2).matVec(xs, 0, m, ref, 0, rows, false);
        TestArrays.assertClose("q8 gemm vs mat-vec", TestArrays.toDouble(ref), g, 1e-4, 1e-4);
    }
}
