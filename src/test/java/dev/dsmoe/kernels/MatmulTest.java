package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.assertClose;
import static dev.dsmoe.kernels.TestArrays.uniform;

import static org.junit.jupiter.api.Assertions.assertEquals;

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
     * An inference instance's GEMM path (fp32 read from the segment, bf16 through the unpacked
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
        Matmul mm = Matmul.forInference();
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
}
