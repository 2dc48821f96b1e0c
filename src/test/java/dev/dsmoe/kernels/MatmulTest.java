package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.assertClose;
import static dev.dsmoe.kernels.TestArrays.uniform;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The linear layer over views, against double-precision references: forward through an expert's
 * column block and an expert weight, and the backward's input and weight gradients.
 */
class MatmulTest {

    @Test
    void forwardAndBackwardThroughExpertViews() {
        int n = 9, e = 3, w = 5, out = 4;
        SplittableRandom r = new SplittableRandom(1);
        float[] in = uniform(r, n * e * w, 1), wts = uniform(r, e * out * w, 1), up = uniform(r, n * out, 1);
        F32Tensor inV = F32Tensor.of(in, n, e * w).expertColumns(e);
        F32Tensor wV = F32Tensor.of(wts, e * out, w).stackedExperts(e);
        Matmul mm = Matmul.forTraining();
        for (int x = 0; x < e; x++) {
            float[] y = uniform(r, n * out, 1), y0 = y.clone();
            mm.forward(F32Tensor.of(y, n, out), inV.expert(x), n, wV.expert(x), true);
            double[] ref = new double[n * out];
            for (int t = 0; t < n; t++) {
                for (int o = 0; o < out; o++) {
                    double s = y0[t * out + o];
                    for (int c = 0; c < w; c++) s += (double) in[t * e * w + x * w + c] * wts[(x * out + o) * w + c];
                    ref[t * out + o] = s;
                }
            }
            assertClose("forward expert " + x, ref, y, 1e-5, 1e-5);

            float[] dIn = new float[n * e * w], dW = new float[e * out * w];
            F32Tensor dInV = F32Tensor.of(dIn, n, e * w).expertColumns(e), dWV = F32Tensor.of(dW, e * out, w).stackedExperts(e);
            mm.backward(dInV.expert(x), dWV.expert(x), F32Tensor.of(up, n, out), inV.expert(x), n, wV.expert(x), false);
            double[] refIn = new double[n * e * w], refW = new double[e * out * w];
            for (int t = 0; t < n; t++) {
                for (int o = 0; o < out; o++) {
                    for (int c = 0; c < w; c++) {
                        refIn[t * e * w + x * w + c] += (double) up[t * out + o] * wts[(x * out + o) * w + c];
                        refW[(x * out + o) * w + c] += (double) up[t * out + o] * in[t * e * w + x * w + c];
                    }
                }
            }
            assertClose("dIn expert " + x, refIn, dIn, 1e-5, 1e-5);
            assertClose("dW expert " + x, refW, dW, 1e-5, 1e-5);
        }
    }

    /**
     * An inference instance's unpack-and-sgemm GEMM path (fp32 read from the segment, bf16 through the unpacked
     * scratch) gives the mat-vec path's result, for every weight format (q8_0 dequantized into the scratch too), through one expert of a
     * stacked weight and into a strided output.
     */
    @Test
    void inferenceGemmPathEqualsTheMatVecPathForEveryFormat() {
        SplittableRandom r = new SplittableRandom(1);
        int experts = 3, rows = 300, cols = 40, m = 20;
        float[] w = uniform(r, experts * rows * cols, 1);
        short[] wb = new short[w.length];
        Bf16.fromFloats(w, 0, wb, 0, w.length);
        float[] x = uniform(r, m * cols, 1);
        Matmul mm = Matmul.forInference(Matmul.MATVEC_MAX_ROWS, false);
        for (MatVec.DType dt : MatVec.DType.values()) {
            MemorySegment seg = dt == MatVec.DType.F32 ? MemorySegment.ofArray(w) : dt.write(java.lang.foreign.Arena.ofAuto(), w, experts * rows, cols);
            TensorView weight = dt.view(seg, 0, experts * rows, cols).stackedExperts(experts);
            int ldy = rows + 3;
            float[] gemm = new float[m * ldy], ref = new float[m * ldy];
            java.util.Arrays.fill(gemm, 1f);
            java.util.Arrays.fill(ref, 1f);
            F32Tensor out = F32Tensor.of(gemm, m, ldy), in = F32Tensor.of(x, m, cols);
            mm.forward(out, 0, in, 0, m, weight.expert(2), true);
            weight.expert(2).matVec(x, 0, m, ref, 0, ldy, true);
            assertClose(dt + " gemm", TestArrays.toDouble(ref), gemm, 1e-4, 1e-4);
            float[] small = new float[2 * ldy];
            mm.forward(F32Tensor.of(small, 2, ldy), 0, in, 0, 2, weight.expert(2), false); // two rows: the mat-vec itself
            for (int i = 0; i < rows; i++) assertEquals(ref[i] - 1f, small[i], 1e-4 * (1 + Math.abs(ref[i])), dt + " " + i);
        }
    }

    /**
     * {@link Matmul#segments}: every output row has the single-row kernel's bits for its expert,
     * in every format and for 1 to 3 threads, with segments of different sizes (0 among them, and
     * sizes that leave remainders of the 4-input tile), experts repeated, gaps between segments
     * left untouched, segments past n ignored; a plain matrix is expert 0.
     */
    @Test
    void segmentsGiveEveryRowTheSingleRowBits() {
        int experts = 5, rows = 70, cols = 100, ldy = rows + 3;
        int[] count = {3, 0, 1, 17, 4, 0, 9, 1, 2}, expert = {2, 0, 4, 2, 0, 1, 4, 3, 2};
        int n = count.length - 1; // the last segment is not part of the call
        int[] start = new int[count.length];
        int t = 0;
        for (int i = 0; i < count.length; i++) {
            start[i] = t;
            t += count[i] + (i % 3 == 0 ? 1 : 0); // a gap after some segments
        }
        SplittableRandom r = new SplittableRandom(5);
        float[] w = uniform(r, experts * rows * cols, 1), x = uniform(r, t * cols, 1);
        F32Tensor in = F32Tensor.of(x, t, cols);
        Matmul mm = Matmul.forInference();
        for (TensorView plain : MatVecTest.everyFormat(w, experts * rows, cols)) {
            TensorView stacked = plain.stackedExperts(experts);
            float[] want = new float[t * ldy];
            java.util.Arrays.fill(want, -7f);
            for (int i = 0; i < n; i++) {
                for (int k = 0; k < count[i]; k++) {
                    int row = start[i] + k;
                    stacked.expert(expert[i]).matVec(x, row * cols, 1, want, row * ldy, ldy, false);
                }
            }
            for (int threads = 1; threads <= 3; threads++) {
                TestArrays.withThreads(threads, () -> {
                    float[] y = new float[want.length];
                    java.util.Arrays.fill(y, -7f);
                    mm.segments(F32Tensor.of(y, want.length / ldy, ldy), in, stacked, n, start, count, expert);
                    assertArrayEquals(want, y, plain + " threads=" + Parallel.threads());
                });
            }
            // a plain matrix is its own expert 0: the first expert's rows of the weight, as one segment
            TensorView first = stacked.expert(0);
            float[] one = new float[t * rows], ref = new float[t * rows];
            mm.segments(F32Tensor.of(one, t, rows), in, first, 1, new int[] {0}, new int[] {t}, new int[] {0});
            for (int row = 0; row < t; row++) first.matVec(x, row * cols, 1, ref, row * rows, rows, false);
            assertArrayEquals(ref, one, plain + " as one plain matrix");
        }
    }

    @Test
    void segmentsRejectBadArguments() {
        SplittableRandom r = new SplittableRandom(6);
        TensorView w = F32Tensor.of(uniform(r, 2 * 8 * 4, 1), 16, 4).stackedExperts(2);
        F32Tensor in = F32Tensor.of(new float[5 * 4], 5, 4), out = F32Tensor.of(new float[5 * 8], 5, 8);
        Matmul mm = Matmul.forInference();
        assertThrows(IllegalArgumentException.class,
                () -> mm.segments(out, in, w, 1, new int[] {0}, new int[] {2}, new int[] {2}), "expert out of range");
        assertThrows(IllegalArgumentException.class,
                () -> mm.segments(out, in, w, 1, new int[] {4}, new int[] {2}, new int[] {1}), "rows past the input");
        assertThrows(IllegalArgumentException.class,
                () -> mm.segments(out, in, w, 2, new int[] {0}, new int[] {2}, new int[] {1}), "n past the arrays");
        assertThrows(IllegalArgumentException.class,
                () -> mm.segments(out, in, w, 1, new int[] {0}, new int[] {-1}, new int[] {1}), "negative count");
        mm.segments(out, in, w, 1, new int[] {0}, new int[] {0}, new int[] {7}); // an empty segment's expert is not read
    }
}
