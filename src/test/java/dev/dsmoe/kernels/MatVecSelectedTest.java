package dev.dsmoe.kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The selected-expert mat-vecs against per-expert double products, every weight format (its weights as it holds them: bf16 rounded, q8_0 dequantized). */
class MatVecSelectedTest {

    @Test
    void selectedExpertsMatchPerExpertProducts() {
        SplittableRandom rnd = new SplittableRandom(3);
        int experts = 5, rows = 70, cols = 37;
        float[] w = TestArrays.uniform(rnd, experts * rows * cols, 1.0);
        int[] sel = {9, 3, 0, 4}; // the reference's experts 3, 0, 4 from offset 1
        float[] x = TestArrays.uniform(rnd, 3 * cols, 1.0);
        for (MatVec.DType dt : MatVec.DType.values()) {
            MemorySegment seg = dt == MatVec.DType.F32 ? MemorySegment.ofArray(w) : dt.write(Arena.ofAuto(), w, experts * rows, cols);
            TensorView weights = dt.view(seg, 0, experts * rows, cols).stackedExperts(experts);
            float[] wq = new float[w.length]; // the weights as the format holds them: the reference's
            for (int r = 0; r < experts * rows; r++) weights.copyRow(r, wq, r * cols);
            int[] chosen = {3, 0, 4};
            float[] y = new float[3 * rows];
            Matmul mm = Matmul.forInference();
            mm.selected(F32Tensor.of(y, 3, rows), F32Tensor.of(x, 3, cols), 0, weights, chosen, 3);
            float[] ySum = new float[rows + 2];
            java.util.Arrays.fill(ySum, 0.5f);
            mm.selectedSum(F32Tensor.of(ySum, 2, 1, rows), 0, F32Tensor.of(x, 3, cols), weights, chosen, 3, true);
            double[] ref = new double[3 * rows], refSum = new double[rows];
            for (int i = 0; i < 3; i++) {
                int e = sel[1 + i];
                for (int r = 0; r < rows; r++) {
                    double a = 0, b = 0;
                    for (int c = 0; c < cols; c++) {
                        double wv = wq[(e * rows + r) * cols + c];
                        a += wv * x[c];
                        b += wv * x[i * cols + c];
                    }
                    ref[i * rows + r] = a;
                    refSum[r] += b;
                }
            }
            for (int r = 0; r < rows; r++) refSum[r] += 0.5;
            TestArrays.assertClose(dt + " selected", ref, y, 0, 1e-5, 1e-5);
            TestArrays.assertClose(dt + " selected sum", refSum, ySum, 2, 1e-4, 1e-5);
        }
    }
}
