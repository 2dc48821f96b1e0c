package dev.dsmoe.infer;

import dev.dsmoe.kernels.Bf16;
import dev.dsmoe.kernels.BlasGemm;
import dev.dsmoe.kernels.Gemm;
import dev.dsmoe.kernels.Kernels;
import dev.dsmoe.kernels.MatVec;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * {@code y[m, rows] (+)= x[m, cols] · Wᵀ} for one weight matrix (or one expert's slice) of an
 * {@link InferenceModel.Weight}. A few input rows (decode, small groups) go to {@link MatVec},
 * which reads each weight once; more rows go to GEMM: fp32 weights straight from their segment
 * through OpenBLAS, otherwise converted block by block into a reusable fp32 scratch for
 * {@link Kernels#gemm()}. One instance per engine (the scratch is not shared between threads).
 */
final class Linear {

    /** Input rows up to which the memory-bound mat-vec is used. */
    static final int MATVEC_MAX_ROWS = 8;
    /** Weight rows converted per GEMM block on the scratch path. */
    private static final int BLOCK_ROWS = 256;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private float[] scratch = new float[0];

    /**
     * The most floats the scratch grows to in an {@link Engine} of {@code c}: a block of the
     * widest matrix it multiplies by ({@code [rows, cols]} of every product Engine makes; the
     * router shapes are counted even without routers, a small overestimate).
     */
    static long scratchFloats(dev.dsmoe.model.ModelConfig c) {
        long d = c.dEmb(), headW = (long) c.nHead() * c.dAtt(), kvW = (long) c.nKv() * c.dAtt(), ffd = c.dFfd();
        long h = c.routerHiddenSize(), experts = Math.max(c.nAtt(), c.nFfd());
        long[][] shapes = {{c.vocabSize(), d}, {kvW, d}, {headW, d}, {ffd, d}, {d, headW}, {d, ffd}, {h, d}, {experts, h},
                {experts, d}};
        long most = 0;
        for (long[] s : shapes) most = Math.max(most, Math.multiplyExact(Math.min(s[0], BLOCK_ROWS), s[1]));
        return most;
    }

    /**
     * {@code y[yOff + i*ldy + r] (+)= Σ_c x[xOff + i*cols + c] · W[r, c]} for {@code i < m},
     * {@code r < rows}, with W the {@code [rows, cols]} matrix at byte {@code wOff} of {@code w}.
     */
    void mul(InferenceModel.Weight w, long wOff, int rows, int cols, float[] x, int xOff, int m,
             float[] y, int yOff, int ldy, boolean accumulate) {
        if (m == 0 || rows == 0) return;
        if (m <= MATVEC_MAX_ROWS) {
            MatVec.mul(w.dtype(), w.segment(), wOff, rows, cols, x, xOff, m, y, yOff, ldy, accumulate);
            return;
        }
        Gemm g = Kernels.gemm();
        float beta = accumulate ? 1f : 0f;
        if (w.dtype() == MatVec.DType.F32 && g instanceof BlasGemm blas) {
            blas.sgemm(false, true, m, rows, cols, 1f,
                    MemorySegment.ofArray(x).asSlice(4L * xOff), cols,
                    w.segment().asSlice(wOff, (long) rows * cols * 4), cols, beta,
                    MemorySegment.ofArray(y).asSlice(4L * yOff), ldy);
            return;
        }
        int block = Math.min(rows, BLOCK_ROWS);
        if (scratch.length < block * cols) scratch = new float[block * cols];
        for (int r0 = 0; r0 < rows; r0 += block) {
            int b = Math.min(block, rows - r0);
            long off = wOff + (long) r0 * cols * w.dtype().bytes;
            int n = b * cols;
            if (w.dtype() == MatVec.DType.F32) {
                MemorySegment.copy(w.segment(), F32, off, scratch, 0, n);
            } else {
                for (int i = 0; i < n; i++) scratch[i] = Bf16.toFloat(w.segment().get(I16, off + 2L * i));
            }
            g.sgemm(false, true, m, b, cols, 1f, x, xOff, cols, scratch, 0, cols, beta, y, yOff + r0, ldy);
        }
    }
}
