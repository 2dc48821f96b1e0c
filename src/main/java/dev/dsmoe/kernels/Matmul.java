package dev.dsmoe.kernels;

/**
 * Linear layers over views, llm.c's {@code matmul_forward} and {@code matmul_backward}:
 * {@code out = in · Wᵀ} with W a PyTorch {@code Linear} weight {@code [out, in]}, and its
 * backward, {@code dIn = dOut · W} and {@code dW += dOutᵀ · in}, in one call. The grouped forms
 * run one product per expert over its contiguous run of rows (ScatterMoE).
 *
 * <p>Training products all go to the GEMM backend ({@link Kernels#gemm()}) over fp32 heap views.
 * An inference instance sends products of up to {@link #MATVEC_MAX_ROWS} input rows to the
 * weight's mat-vec (one pass over the weights, the speed limit of decode) and larger ones to GEMM
 * by the weight format's own way. One instance per model or engine: it holds the fp32 scratch a
 * format may unpack its weights into (not shared between threads).
 */
public final class Matmul {

    /** Input rows up to which an inference instance uses the memory-bound mat-vec. */
    public static final int MATVEC_MAX_ROWS = 8;

    private final int matVecMaxRows;

    private Matmul(int matVecMaxRows) {
        this.matVecMaxRows = matVecMaxRows;
    }

    /** Every product through GEMM, as training makes them (the bits of a trained model depend on it). */
    public static Matmul forTraining() {
        return new Matmul(0);
    }

    /** Small products through the weights' mat-vec, the others through GEMM: inference. */
    public static Matmul forInference() {
        return new Matmul(MATVEC_MAX_ROWS);
    }

    /** {@code out[i] (+)= in[i] · Wᵀ} for the first {@code rows} rows. */
    public void forward(TensorView out, TensorView in, int rows, TensorView w, boolean accumulate) {
        forward(out, 0, in, 0, rows, w, accumulate);
    }

    /** {@code out[outRow + i] (+)= in[inRow + i] · Wᵀ} for {@code i < rows}. */
    public void forward(TensorView out, int outRow, TensorView in, int inRow, int rows, TensorView w, boolean accumulate) {
        if (rows == 0 || w.rows == 0) return;
        Kernels.gemm().sgemm(false, true, rows, w.rows, w.cols, 1f, in.array(), in.rowOff(inRow), in.ld,
                w.array(), w.off(), w.ld, accumulate ? 1f : 0f, out.array(), out.rowOff(outRow), out.ld);
    }

    /**
     * Backward of {@link #forward} over the first {@code rows} rows: {@code dW += dOutᵀ · in} and
     * {@code dIn (+)= dOut · W}. fp32 heap views only (training).
     */
    public void backward(TensorView dIn, TensorView dW, TensorView dOut, TensorView in, int rows, TensorView w,
                         boolean accumulateDIn) {
        backward(0, rows, dIn, dW, dOut, in, w, accumulateDIn);
    }

    private void backward(int row, int rows, TensorView dIn, TensorView dW, TensorView dOut, TensorView in, TensorView w,
                          boolean accumulateDIn) {
        Gemm g = Kernels.gemm();
        int dOutOff = dOut.rowOff(row);
        g.sgemm(true, false, w.rows, w.cols, rows, 1f, dOut.array(), dOutOff, dOut.ld, in.array(), in.rowOff(row), in.ld,
                1f, dW.array(), dW.off(), dW.ld);
        g.sgemm(false, false, rows, w.cols, w.rows, 1f, dOut.array(), dOutOff, dOut.ld, w.array(), w.off(), w.ld,
                accumulateDIn ? 1f : 0f, dIn.array(), dIn.rowOff(row), dIn.ld);
    }

    /** Grouped rows through their experts: {@code out[r] = in[r] · W_{expert(r)}ᵀ}, one product per expert. */
    public void grouped(ExpertGroups groups, TensorView out, TensorView in, TensorView w) {
        for (int x = 0; x < groups.experts(); x++) {
            int cnt = groups.count(x), r0 = groups.start(x);
            if (cnt > 0) forward(out, r0, in, r0, cnt, w.expert(x), false);
        }
    }

    /** Backward of {@link #grouped}: each expert's weight gradient and its rows' input gradient (overwritten). */
    public void groupedBackward(ExpertGroups groups, TensorView dIn, TensorView dW, TensorView dOut, TensorView in,
                                TensorView w) {
        for (int x = 0; x < groups.experts(); x++) {
            int cnt = groups.count(x), r0 = groups.start(x);
            if (cnt > 0) backward(r0, cnt, dIn, dW.expert(x), dOut, in, w.expert(x), false);
        }
    }
}
