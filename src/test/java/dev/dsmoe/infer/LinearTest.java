package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.dsmoe.kernels.Bf16;
import dev.dsmoe.kernels.MatVec;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The GEMM paths (fp32 from the segment, bf16 through the converted scratch) equal the mat-vec path. */
class LinearTest {

    @Test
    void gemmPathEqualsMatVecPathForBothWeightTypes() {
        SplittableRandom r = new SplittableRandom(1);
        int experts = 3, rows = 300, cols = 40, m = 20;
        float[] w = new float[experts * rows * cols];
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextGaussian();
        short[] wb = new short[w.length];
        Bf16.fromFloats(w, 0, wb, 0, w.length);
        float[] x = new float[m * cols];
        for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
        for (MatVec.DType dt : MatVec.DType.values()) {
            MemorySegment seg = dt == MatVec.DType.F32 ? MemorySegment.ofArray(w) : MemorySegment.ofArray(wb);
            InferenceModel.Weight weight = new InferenceModel.Weight(seg, dt, experts, rows, cols);
            int ldy = rows + 3;
            float[] gemm = new float[m * ldy], ref = new float[m * ldy];
            java.util.Arrays.fill(gemm, 1f);
            java.util.Arrays.fill(ref, 1f);
            new Linear().mul(weight, weight.offset(2), rows, cols, x, 0, m, gemm, 0, ldy, true);
            MatVec.mul(dt, seg, weight.offset(2), rows, cols, x, 0, m, ref, 0, ldy, true);
            for (int i = 0; i < ref.length; i++) assertEquals(ref[i], gemm[i], 1e-4 * (1 + Math.abs(ref[i])), dt + " " + i);
        }
    }
}
