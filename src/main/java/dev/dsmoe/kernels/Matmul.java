package dev.dsmoe.kernels;

/**
 * Linear layers over views, llm.c's {@code matmul_forward} and {@code matmul_backward}:
 * {@code out = in · Wᵀ} with W a PyTorch {@code Linear} weight {@code [out, in]}, and its
 * backward, {@code dIn = dOut · W} and {@code dW += dOutᵀ · in}, in one call. The grouped forms
 * run one product per expert over its contiguous run of rows (ScatterMoE).
 *
 * <p>Products go to the GEMM backend ({@link Kernels#gemm()}) the weight format's way
 * ({@link TensorView}: fp32 read in place, other formats unpacked to fp32 once per product). A
 * training instance sends every product there (the bits of a trained model depend on it; the
 * backward is for fp32 heap views only); an inference instance sends products of up to
 * {@link #MATVEC_MAX_ROWS} input rows to the format's mat-vec instead (one pass over the weights,
 * the speed limit of decode). One instance per model or engine: it holds the fp32 scratch a
 * format unpacks its weights into (not shared between threads).
 */
public final class Matmul {

    /** Input rows up to which an inference instance uses the memory-bound mat-vec. */
    public static final int MATVEC_MAX_ROWS = 8;
    /**
     * Floats of fp32 scratch a format that GEMM cannot read (bf16, Q8_0) unpacks its weight into
     * at a time (64 MiB): as many whole rows as fit, at least {@link #UNPACK_MIN_ROWS}. One GEMM per
     * block: with blocks of 256 rows (the earlier fixed size) the dense-1b prefill (prompt 512) ran
     * at 74-76 tok/s in q8_0 and 72-85 in bf16, with whole [8192 x 2048] matrices at 91-93 and 90-93.
     */
    public static final long UNPACK_FLOATS = 1L << 24;
    /** Weight rows unpacked at a time at least, however long the rows. */
    public static final int UNPACK_MIN_ROWS = 256;

    private final int matVecMaxRows;

    /** Inference's large products through oneDNN when it loaded (null: training, or not available). */
    private final OneDnn oneDnn;
    private float[] scratch = new float[0];
    private Matmul[] workers = new Matmul[0]; // per-thread instances (own scratch) for runs

    /*
     * Wall time inside the products, for `bench infer --profile` (how much of a decode step is not
     * weight reads). Off by default: then one static read per product call. Counted on the calling
     * thread only (a step's products are issued by one thread and parallel inside).
     */
    private static boolean timing;
    private static long timedNanos;

    /** Starts adding up the wall time spent in this class's products (from zero). */
    public static void startTiming() {
        timedNanos = 0;
        timing = true;
    }

    /** Stops timing; the nanoseconds spent in products since {@link #startTiming()}. */
    public static long stopTiming() {
        timing = false;
        return timedNanos;
    }

    private static long tic() {
        return timing ? System.nanoTime() : 0;
    }

    private static void toc(long t0) {
        if (timing) timedNanos += System.nanoTime() - t0;
    }

    private Matmul(int matVecMaxRows, OneDnn oneDnn) {
        this.matVecMaxRows = matVecMaxRows;
        this.oneDnn = oneDnn;
    }

    /** Every product through GEMM, as training makes them (the bits of a trained model depend on it). */
    public static Matmul forTraining() {
        return new Matmul(0, null);
    }

    /** Small products through the weights' mat-vec, the others through GEMM: inference. */
    public static Matmul forInference() {
        return new Matmul(MATVEC_MAX_ROWS, OneDnn.get());
    }

    /**
     * Every product through the weights' mat-vec, whatever its rows: for the rows of a batch that
     * each belong to a different small piece of work (decoded tokens of many sequences), whose
     * results must be those each would get alone (the mat-vec's result for a row does not depend
     * on the other rows).
     */
    public static Matmul matVecOnly() {
        return new Matmul(Integer.MAX_VALUE, null);
    }

    /**
     * An inference instance that sends products of up to {@code matVecMaxRows} input rows to the
     * mat-vec (the benchmarks compare both paths at the same M; the engine uses {@link #forInference()}).
     */
    public static Matmul forInference(int matVecMaxRows) {
        return forInference(matVecMaxRows, true);
    }

    /**
     * {@link #forInference(int)}, with its GEMM products through oneDNN ({@code oneDnn} and the
     * library loaded) or through the weight format's unpack-and-sgemm path (the tests and
     * benchmarks compare the two).
     */
    public static Matmul forInference(int matVecMaxRows, boolean oneDnn) {
        if (matVecMaxRows < 0) throw new IllegalArgumentException("negative mat-vec row limit " + matVecMaxRows);
        return new Matmul(matVecMaxRows, oneDnn ? OneDnn.get() : null);
    }

    /** {@code out[i] (+)= in[i] · Wᵀ} for the first {@code rows} rows. */
    public void forward(TensorView out, TensorView in, int rows, TensorView w, boolean accumulate) {
        forward(out, 0, in, 0, rows, w, accumulate);
    }

    /** {@code out[outRow + i] (+)= in[inRow + i] · Wᵀ} for {@code i < rows}. */
    public void forward(TensorView out, int outRow, TensorView in, int inRow, int rows, TensorView w, boolean accumulate) {
        long t0 = tic();
        product(out, outRow, in, inRow, rows, w, accumulate);
        toc(t0);
    }

    /**
     * {@code outs[i][outRow + j] = in[inRow + j] · W_iᵀ} for {@code i < n}, {@code j < rows}: products
     * of weights that read the same input rows, in one parallel pass over all their rows when
     * this instance takes {@code rows} inputs through the mat-vec (decode), else one product each.
     * The bits are those of {@link #forward} with each weight alone. {@code ys}, {@code yOffs} and
     * {@code ldys} (n at least) are the caller's room for the outputs' arrays, offsets and strides,
     * so that a decode step allocates none.
     */
    public void forwardShared(TensorView[] outs, int outRow, TensorView in, int inRow, int rows, TensorView[] w, int n,
                              float[][] ys, int[] yOffs, int[] ldys) {
        if (rows > matVecMaxRows) {
            for (int i = 0; i < n; i++) forward(outs[i], outRow, in, inRow, rows, w[i], false);
            return;
        }
        long t0 = tic();
        if (n > 0 && in.ld != w[0].cols) throw new IllegalArgumentException("mat-vec input rows must be contiguous: " + in);
        for (int i = 0; i < n; i++) {
            ys[i] = outs[i].array();
            yOffs[i] = outs[i].rowOff(outRow);
            ldys[i] = outs[i].ld;
        }
        TensorView.matVecShared(w, n, in.array(), in.rowOff(inRow), rows, ys, yOffs, ldys);
        toc(t0);
    }

    /**
     * One input row through selected experts of a stacked-expert weight, in one pass over their
     * rows (decode): {@code out[i] = in[inRow] · W_{experts[i]}ᵀ} for {@code i < count}, out's
     * rows contiguous. Only the selected experts' weights are read.
     */
    public void selected(TensorView out, TensorView in, int inRow, TensorView w, int[] experts, int count) {
        long t0 = tic();
        w.matVecSelected(experts, 0, count, in.array(), in.rowOff(inRow), out.array(), out.off());
        toc(t0);
    }

    /**
     * The sum of selected experts' products, each expert with its own input row (decode):
     * {@code out[outRow] (+)= Σ_i in[i] · W_{experts[i]}ᵀ}, summed in list order.
     */
    public void selectedSum(TensorView out, int outRow, TensorView in, TensorView w, int[] experts, int count,
                            boolean accumulate) {
        long t0 = tic();
        w.matVecSelectedSum(experts, 0, count, in.array(), in.off(), out.array(), out.rowOff(outRow), accumulate);
        toc(t0);
    }

    /**
     * Segments of grouped rows through their experts in one parallel region (the decode and
     * batched steps' expert products, many of a few rows each): for each segment {@code i < n},
     * rows {@code [start[i], start[i] + count[i])} of {@code in} times {@code W_{expert[i]}ᵀ} into the
     * same rows of {@code out}, overwritten; segments of 0 rows are skipped, an expert may appear
     * in several segments, and segments must not share rows. {@code w} is a stacked-expert view
     * (or a plain matrix, expert 0); {@code in}'s rows are contiguous ({@code w.cols()} floats),
     * {@code out}'s first R columns are written, R the rows of one expert.
     *
     * <p>Always the mat-vec kernels, never GEMM, whatever the counts: every output has the
     * single-row kernel's bits, so a row's result does not depend on what else is in the
     * segments. The pass is split over (segment, block of weight rows) by estimated cost.
     */
    public void segments(TensorView out, TensorView in, TensorView w, int n, int[] start, int[] count, int[] expert) {
        if (in.ld != w.cols) throw new IllegalArgumentException("segment input rows must be contiguous: " + in + " for " + w);
        long t0 = tic();
        w.matVecSegments(in.array(), in.off(), out.array(), out.off(), out.ld, n, start, count, expert);
        toc(t0);
    }

    /**
     * Expert products summed into their tokens' rows, one accumulator per output element (the
     * decode step's output products): for each piece {@code p < n}, row {@code inRow[p]} of
     * {@code in} times {@code W_{expert[p]}ᵀ} into slot {@code slot[p]}'s sum, and slot s's sum
     * added to row {@code outRow[s]} of {@code out}. Pieces in ascending expert order, a slot
     * taking an expert once; a slot's result depends on its own pieces only
     * ({@link TensorView#matVecPieceSums}). Always the mat-vec kernels.
     */
    public void pieceSums(TensorView out, TensorView in, TensorView w, int n, int[] inRow, int[] expert, int[] slot,
                          int slots, int[] outRow) {
        if (in.ld != w.cols) throw new IllegalArgumentException("piece input rows must be contiguous: " + in + " for " + w);
        long t0 = tic();
        w.matVecPieceSums(in.array(), in.off(), out.array(), out.off(), out.ld, n, inRow, expert, slot, slots, outRow);
        toc(t0);
    }

    /**
     * Runs of grouped rows through their experts by GEMM (prefill's expert products, each run
     * one sequence's rows of one expert): for {@code i < n}, rows {@code [start[i], start[i] + count[i])}
     * of {@code in} times {@code W_{expert[i]}ᵀ} into the same rows of {@code out}, overwritten.
     * Whole runs are shared out over the threads, contiguous groups of about equal rows, and
     * each product runs single-threaded: an expert's product is small (tens of rows against a
     * [256 x 2048] weight at the 1B shapes), and splitting each over the threads paid a parallel
     * region per product and packed the run's inputs once per thread. A run's result is that of
     * {@link #forward} on it alone (GEMM rows do not depend on the thread count).
     */
    public void runs(TensorView out, TensorView in, TensorView w, int n, int[] start, int[] count, int[] expert) {
        if (n == 0) return;
        long t0 = tic();
        int threads = Math.min(Parallel.threads(), n);
        if (threads == 1) {
            for (int i = 0; i < n; i++) product(out, start[i], in, start[i], count[i], w.expert(expert[i]), false);
        } else {
            if (workers.length < threads) {
                workers = new Matmul[threads];
                for (int t = 0; t < threads; t++) workers[t] = new Matmul(matVecMaxRows, oneDnn);
            }
            long rows = 0;
            for (int i = 0; i < n; i++) rows += count[i];
            final long all = rows;
            final int groups = threads;
            Parallel.forRange(groups, 1, (g0, g1) -> {
                for (int g = g0; g < g1; g++) {
                    Matmul mm = workers[g];
                    // group g: the runs whose first row falls in [g, g+1) / groups of all rows
                    long seen = 0;
                    for (int i = 0; i < n; i++) {
                        if (seen * groups >= all * g && seen * groups < all * (g + 1)) {
                            mm.product(out, start[i], in, start[i], count[i], w.expert(expert[i]), false);
                        }
                        seen += count[i];
                    }
                }
            });
        }
        toc(t0);
    }

    /** Whether {@link #groupedRuns} can run products of this weight here (oneDNN loaded and reads its format). */
    public boolean readsGrouped(TensorView w) {
        return oneDnn != null && OneDnn.reads(w);
    }

    /**
     * Grouped expert products with the gather and scatter folded in (oneDNN only:
     * {@link #readsGrouped}): for group {@code p < n}, {@code i < count[p]},
     * {@code out[outRow(outStart[p] + i)] (+)= in[inRow(inStart[p] + i)] · W_{expert[p]}ᵀ};
     * {@code inRow(0 .. srcRows)} converted once, null row maps the identity. See
     * {@link OneDnn#grouped} for the order of a shared output row's terms.
     */
    public void groupedRuns(TensorView out, TensorView in, TensorView w, int n, int[] expert, int[] inRow, int srcRows,
                        int[] inStart, int[] count, int[] outRow, int[] outStart, boolean accumulate, boolean shared) {
        if (oneDnn == null) throw new IllegalStateException("grouped products need oneDNN");
        long t0 = tic();
        oneDnn.grouped(w, n, expert, w.expert(0).rows(), w.expert(0).cols(), in.array(), in.off(), in.ld, inRow, srcRows, inStart,
                count, out.array(), out.off(), out.ld, outRow, outStart, accumulate, shared);
        toc(t0);
    }

    /** {@link #forward} without the timing (also called on worker threads by {@link #runs}). */
    private void product(TensorView out, int outRow, TensorView in, int inRow, int rows, TensorView w, boolean accumulate) {
        if (rows == 0 || w.rows == 0) return;
        float[] x = in.array(), y = out.array();
        int xOff = in.rowOff(inRow), yOff = out.rowOff(outRow);
        if (rows <= matVecMaxRows) {
            if (in.ld != w.cols) throw new IllegalArgumentException("mat-vec input rows must be contiguous: " + in);
            w.matVec(x, xOff, rows, y, yOff, out.ld, accumulate);
        } else {
            w.gemm(this, x, xOff, in.ld, rows, y, yOff, out.ld, accumulate ? 1f : 0f);
        }
    }

    /** oneDNN for this instance's GEMM products, or null (training; library absent or switched off). */
    public OneDnn oneDnn() {
        return oneDnn;
    }

    /** The fp32 scratch a format unpacks weights into, grown to {@code floats} on first need. */
    float[] scratch(int floats) {
        if (scratch.length < floats) scratch = new float[floats];
        return scratch;
    }

    /** The most floats the scratch grows to for products with a {@code [rows, cols]} weight. */
    public static long scratchFloats(long rows, long cols) {
        return Math.multiplyExact(unpackRows(rows, cols), cols);
    }

    /** Rows of a {@code [rows, cols]} weight that a format unpacks to fp32 at a time for a GEMM. */
    public static int unpackRows(long rows, long cols) {
        return (int) Math.min(rows, Math.max(UNPACK_MIN_ROWS, UNPACK_FLOATS / Math.max(1, cols)));
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

    /** Backward of {@link #grouped(ExpertGroups, TensorView, TensorView, TensorView)}: each expert's weight gradient and its rows' input gradient (overwritten). */
    public void groupedBackward(ExpertGroups groups, TensorView dIn, TensorView dW, TensorView dOut, TensorView in,
                                TensorView w) {
        for (int x = 0; x < groups.experts(); x++) {
            int cnt = groups.count(x), r0 = groups.start(x);
            if (cnt > 0) backward(r0, cnt, dIn, dW.expert(x), dOut, in, w.expert(x), false);
        }
    }
}
