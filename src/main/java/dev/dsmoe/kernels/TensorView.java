package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;

/**
 * A view of a matrix {@code [rows, cols]} (row stride {@code ld} elements) somewhere in memory:
 * a parameter in the flat training buffer, its gradient, an activation in an arena, or a weight
 * of a loaded model. The subclass is the element format ({@link F32Tensor}, {@link Bf16Tensor}, {@link Q8Tensor})
 * and supplies that format's kernels, as llama3.java's tensor classes do: its mat-vec row
 * kernels and its way into a GEMM. A new format is one more subclass (and its
 * {@link MatVec.DType} constant, which names it for loading).
 *
 * <p>A view may hold experts: stacked along its rows (a weight {@code [E, rows, cols]}, used whole
 * as one {@code [E·rows, cols]} matrix or expert by expert) or side by side along its columns (an
 * activation {@code [N, E·w]} whose column block e belongs to expert e). {@link #expert} returns
 * the view of one, made when the view was made: views are built once (a model's load, a
 * Transformer's construction, an arena's allocation), never inside a step.
 *
 * <p>Kernels know no models: names (which layer, which projection) belong to whoever builds the
 * views ({@code ParamLayout}, {@code Activations}, {@code InferenceModel}).
 */
public abstract class TensorView {

    final int rows, cols, ld;
    private TensorView[] experts;

    TensorView(int rows, int cols, int ld) {
        if (rows < 0 || cols < 0 || ld < cols) {
            throw new IllegalArgumentException("bad view [" + rows + " x " + cols + ", ld " + ld + "]");
        }
        this.rows = rows;
        this.cols = cols;
        this.ld = ld;
    }

    /** A view of the same format and storage: {@code [rows, cols]} with row stride {@code ld}, {@code offset} elements further on. */
    abstract TensorView slice(long offset, int rows, int cols, int ld);

    public final int rows() {
        return rows;
    }

    public final int cols() {
        return cols;
    }

    /** Elements from the start of one row to the start of the next. */
    public final int ld() {
        return ld;
    }

    /** Number of experts ({@link #expert}); 1 for a plain matrix. */
    public final int experts() {
        return experts == null ? 1 : experts.length;
    }

    /** Expert {@code e}'s view; a plain matrix is its own expert 0. */
    public TensorView expert(int e) {
        if (experts == null) {
            if (e != 0) throw new IndexOutOfBoundsException("expert " + e + " of a view without experts");
            return this;
        }
        return experts[e];
    }

    /** This view with {@code n} experts stacked along its rows: expert e is rows {@code [e·rows/n, (e+1)·rows/n)}. */
    public TensorView stackedExperts(int n) {
        if (n < 1 || rows % n != 0) throw new IllegalArgumentException(rows + " rows do not split into " + n + " experts");
        TensorView v = slice(0, rows, cols, ld);
        int r = rows / n;
        v.experts = new TensorView[n];
        for (int e = 0; e < n; e++) v.experts[e] = slice((long) e * r * ld, r, cols, ld);
        return v;
    }

    /** This view with {@code n} experts side by side along its columns: expert e is columns {@code [e·cols/n, (e+1)·cols/n)}. */
    public TensorView expertColumns(int n) {
        if (n < 1 || cols % n != 0) throw new IllegalArgumentException(cols + " columns do not split into " + n + " experts");
        TensorView v = slice(0, rows, cols, ld);
        int w = cols / n;
        v.experts = new TensorView[n];
        for (int e = 0; e < n; e++) v.experts[e] = slice((long) e * w, rows, w, ld);
        return v;
    }

    /**
     * Bytes {@link #sideBySide} writes for this view's experts (E stacked experts {@code [E·R, C]}):
     * the format's size of one {@code [R, E·C]} matrix.
     */
    public long sideBySideBytes() {
        return format().bytes(rows / experts(), (long) experts() * cols);
    }

    /** The weight format this view is ({@link MatVec.DType}: its sizes and views). */
    abstract MatVec.DType format();

    /**
     * This view's E stacked experts ({@code [E·R, C]}, rows contiguous) copied side by side into
     * {@code dst} ({@link #sideBySideBytes} of it, from its start): one {@code [R, E·C]} matrix,
     * rows contiguous, whose columns {@code [e·C, (e+1)·C)} are expert e's. A token that chose every
     * expert then sums their E products {@code Σ_e W_e · h_e} as one mat-vec (or GEMM) over rows of
     * E·C weights, {@code [W_0 … W_{E-1}] · [h_0; …; h_{E-1}]}, instead of E pieces of C columns.
     * Q8_0 needs C a multiple of its block (a block must not straddle two experts).
     */
    public TensorView sideBySide(MemorySegment dst) {
        int n = experts(), r = rows / n;
        if (ld != cols) throw new IllegalArgumentException("side by side needs contiguous rows, got " + this);
        if (dst.byteSize() < sideBySideBytes()) {
            throw new IllegalArgumentException("side by side: " + dst.byteSize() + " bytes for " + sideBySideBytes());
        }
        return copySideBySide(dst, n, r);
    }

    /**
     * {@link #sideBySide}'s copy, arguments checked: {@code n} experts of {@code r} rows, for a format
     * of plain elements ({@link #elementBytes} each, no scales); a format with scales overrides it.
     */
    TensorView copySideBySide(MemorySegment dst, int n, int r) {
        long eb = elementBytes(), row = cols * eb, wide = n * row;
        MemorySegment src = segment();
        Parallel.forRange(r, 64, (r0, r1) -> {
            for (int i = r0; i < r1; i++) {
                for (int e = 0; e < n; e++) {
                    MemorySegment.copy(src, byteOffset() + ((long) e * r + i) * row, dst, i * wide + e * row, row);
                }
            }
        });
        return format().view(dst, 0, r, n * cols);
    }

    /**
     * The fp32 heap array the view lies in, for the kernels that read and write activations,
     * parameters and gradients in place; a format without one throws.
     */
    public float[] array() {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " has no fp32 heap array");
    }

    /** Index of element {@code [0, 0]} in {@link #array()}. */
    public int off() {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " has no fp32 heap array");
    }

    /** Index in {@link #array()} of the first element of row {@code r}. */
    public final int rowOff(int r) {
        return off() + r * ld;
    }

    // ------------------------------------------------------------------ the format's kernels

    /** Bytes of one element. */
    public abstract int elementBytes();

    /** The storage as a memory segment (a heap array wrapped, a mapped file, off-heap memory). */
    public abstract MemorySegment segment();

    /** Byte offset of element {@code [0, 0]} in {@link #segment()}. */
    public abstract long byteOffset();

    /** Row {@code r} as fp32 into {@code dst[dstOff .. dstOff + cols)} (an embedding lookup). */
    public abstract void copyRow(int r, float[] dst, int dstOff);

    /**
     * The mat-vec: {@code y[yOff + i·ldy + r] (+)= Σ_c x[xOff + i·cols + c] · W[r, c]} for
     * {@code i < m}, reading each weight row once for all m inputs (rows contiguous, split over
     * {@link Parallel}'s threads).
     *
     * <p>This method and the two selected-expert ones check their arguments and work out the
     * offsets for every format (from {@link #elementBytes()}); the format supplies the parallel
     * loops over its row kernel ({@link #matVecOneRow}, {@link #matVecRows}, {@link #selectedRows},
     * {@link #selectedSumRows}). Those stay one lambda per format and per single-row/multi-row
     * case: a lambda shared by the formats, or by one and several input rows, mixes their
     * profiles, and C2 then recompiles it (uncommon traps) whenever the other case shows up;
     * with the row count a literal 1, C2 folds the row kernel's multi-row branches away.
     */
    final void matVec(float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        checkMatVec(x, xOff, m, y, yOff, ldy);
        if (m == 1) matVecOneRow(x, xOff, y, yOff, accumulate);
        else matVecRows(x, xOff, m, y, yOff, ldy, accumulate);
    }

    /**
     * Selected experts of a stacked-expert view against one input, in one parallel pass over
     * their rows: {@code y[yOff + i·R + r] = Σ_c x[xOff + c] · W_e[r, c]}, {@code e = experts[eOff + i]},
     * {@code i < count}, R the rows of one expert.
     */
    final void matVecSelected(int[] experts, int eOff, int count, float[] x, int xOff, float[] y, int yOff) {
        int rows = expert(0).rows;
        checkSelected(experts, eOff, count, x, xOff, cols, y, yOff, (long) count * rows);
        selectedRows(experts, eOff, count, rows, expertBytes(rows), x, xOff, y, yOff);
    }

    /**
     * The sum of selected experts' products, each with its own input:
     * {@code y[yOff + r] (+)= Σ_i Σ_c x[xOff + i·C + c] · W_e[r, c]}, summed over the experts in list order.
     */
    final void matVecSelectedSum(int[] experts, int eOff, int count, float[] x, int xOff, float[] y, int yOff,
                                 boolean accumulate) {
        int rows = expert(0).rows;
        checkSelected(experts, eOff, count, x, xOff, (long) count * cols, y, yOff, rows);
        if (count == 0) {
            if (!accumulate) java.util.Arrays.fill(y, yOff, yOff + rows, 0f);
            return;
        }
        selectedSumRows(experts, eOff, count, rows, expertBytes(rows), x, xOff, y, yOff, accumulate);
    }

    /**
     * Segments of rows through their experts, in one parallel pass: for each segment {@code i < n}
     * with {@code count[i] > 0}, {@code y[yOff + (start[i] + k)·ldy + r] = Σ_c x[xOff + (start[i] + k)·cols + c]
     * · W_e[r, c]} for {@code k < count[i]}, {@code r < R}, {@code e = expert[i]}, R the rows of one
     * expert (a plain matrix is expert 0). Always the mat-vec kernels: every output has the
     * single-row kernel's bits, whatever the segments. The segments' rows must not overlap.
     *
     * <p>The pass is split over (segment, block of weight rows) by estimated cost, so experts with
     * few input rows and experts with many share the threads: a weight row of a segment of m
     * input rows costs {@link #segmentRowCost} + m units (reading the row, then m dot products).
     * The cost line is cut into about four chunks a thread, which the threads take as they finish
     * ({@link Parallel#forChunks}).
     */
    final void matVecSegments(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] start, int[] count,
                              int[] expert) {
        int rows = expert(0).rows;
        checkSegments(x, xOff, y, yOff, ldy, n, start, count, expert, rows);
        int rowCost = segmentRowCost();
        long work = 0;
        int busy = 0;
        for (int i = 0; i < n; i++) {
            if (count[i] > 0) {
                work += (long) rows * (rowCost + count[i]);
                busy++;
            }
        }
        if (work == 0) return;
        int chunks = Math.min(4 * Parallel.threads(), Math.max(1, (int) Math.min(Integer.MAX_VALUE, (long) busy * rows / MatVec.ROW_GRAIN)));
        segmentRows(x, xOff, y, yOff, ldy, n, start, count, expert, rows, expertBytes(rows), work, rowCost, chunks);
    }

    /**
     * Sums of expert products, one accumulator per output element (decode's output products:
     * each token's gated expert outputs added into its residual row without a row per expert in
     * between): for each piece {@code p < n}, input row {@code inRow[p]} of x ({@code cols} floats
     * from {@code xOff + inRow[p]·cols}) times {@code W_{expert[p]}ᵀ} goes into slot
     * {@code slot[p]}'s sum, and each slot s then adds its sum into
     * {@code y[yOff + outRow[s]·ldy + r]} for {@code r < R} (R the rows of one expert).
     *
     * <p>The pieces must come in ascending expert order (as {@link ExpertGroups} groups rows) and
     * a slot may take an expert once. A slot's pieces go in two halves (its first ⌈k/2⌉ of k, then
     * the rest); a slot's sum for output r is, for each half, one lane accumulator over the half's
     * pieces in order and their column blocks in order, the two accumulators added, their lane sum
     * ({@link Simd#addLanes}'s bits), then the two halves' scalar column tail sums (each over its
     * pieces in order) added to it: its bits depend on its own pieces only, not
     * on the other slots nor on the thread split, so a token gets the same sum alone and in a batch.
     * Pieces of one expert share each weight tile (four slots at a time), so a batch reads each
     * selected expert's weights once.
     */
    final void matVecPieceSums(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] inRow, int[] expert,
                               int[] slot, int slots, int[] outRow) {
        int rows = expert(0).rows;
        if (n < 0 || slots < 0 || n > inRow.length || n > expert.length || n > slot.length || slots > outRow.length) {
            throw new IllegalArgumentException("piece sums: " + n + " pieces, " + slots + " slots, arrays too short");
        }
        if (ld != cols || byteOffset() + (long) rows * experts() * cols * elementBytes() > segment().byteSize()) {
            throw new IllegalArgumentException("piece sums: " + this + " is not contiguous inside its segment");
        }
        for (int p = 0; p < n; p++) {
            if (expert[p] < 0 || expert[p] >= experts()) {
                throw new IllegalArgumentException("piece sums: expert " + expert[p] + " is not one of the " + experts() + " experts");
            }
            if (p > 0 && expert[p] < expert[p - 1]) throw new IllegalArgumentException("piece sums: pieces not in expert order");
            if (slot[p] < 0 || slot[p] >= slots) throw new IllegalArgumentException("piece sums: slot " + slot[p] + " of " + slots);
            if (inRow[p] < 0 || xOff + (long) (inRow[p] + 1) * cols > x.length) {
                throw new IllegalArgumentException("piece sums: input row " + inRow[p] + " outside x");
            }
        }
        for (int s = 0; s < slots; s++) {
            if (outRow[s] < 0 || yOff + (long) outRow[s] * ldy + rows > y.length) {
                throw new IllegalArgumentException("piece sums: output row " + outRow[s] + " outside y");
            }
        }
        if (n == 0 || rows == 0) return;
        pieceSumRows(x, xOff, y, yOff, ldy, n, inRow, expert, slot, slots, outRow, rows, expertBytes(rows));
    }

    /**
     * The cost of reading one weight row in the units of {@link #matVecSegments}'s split (one
     * unit: one dot product of an input row with it): twice the bytes of an element, which on
     * the 2-core machines of BENCHMARKS.md is about where the mat-vec turns from memory-bound to
     * compute-bound (8 input rows for fp32).
     */
    private int segmentRowCost() {
        return 2 * elementBytes();
    }

    /**
     * Where the point {@code target} of {@link #matVecSegments}'s cost line falls: segment
     * {@code (int) (p >>> 32)}, weight row {@code (int) p} (a multiple of the row tile), or
     * {@code n} and 0 past the end. Chunk c of a pass covers the points from {@code work·c/chunks}
     * to {@code work·(c+1)/chunks}: consecutive chunks meet where one ends.
     */
    static long segmentPoint(long target, int n, int[] count, int rows, int rowCost) {
        long at = 0;
        for (int i = 0; i < n; i++) {
            if (count[i] <= 0) continue;
            long perRow = rowCost + count[i], cost = perRow * rows;
            if (target < at + cost) {
                int r = (int) ((target - at) / perRow) / MatVec.TILE_ROWS * MatVec.TILE_ROWS;
                return (long) i << 32 | r;
            }
            at += cost;
        }
        return (long) n << 32;
    }

    /** Bytes from one stacked expert of {@code rows} rows to the next. */
    private long expertBytes(int rows) {
        return (long) elementBytes() * rows * cols;
    }

    /**
     * Products of several weights that read the same m input rows, in one parallel pass over all
     * their rows: {@code y[i][yOff[i] + j·ldy[i] + r] = Σ_c x[xOff + j·cols + c] · W_i[r, c]} for
     * {@code i < n}, {@code j < m}, each weight with {@code cols} columns. A decode layer's key,
     * value and attention-router projections (and its stacked queries, when every token takes every
     * attention expert) all read the normed residual: one pass over their 768 (2816) rows instead of
     * passes of 128, 128, 512 (and 2048), each of which paid its streams' start and the threads'
     * join. Every output has {@link #matVec}'s bits: which rows share a tile, or a thread's range,
     * changes none.
     */
    static void matVecShared(TensorView[] w, int n, float[] x, int xOff, int m, float[][] y, int[] yOff, int[] ldy) {
        if (n < 0 || n > w.length || n > y.length || n > yOff.length || n > ldy.length) {
            throw new IllegalArgumentException("shared-input products: " + n + " weights, arrays too short");
        }
        int total = 0;
        for (int i = 0; i < n; i++) {
            if (w[i].cols != w[0].cols) {
                throw new IllegalArgumentException("shared-input products: " + w[i] + " and " + w[0] + " differ in columns");
            }
            w[i].checkMatVec(x, xOff, m, y[i], yOff[i], ldy[i]);
            total = Math.addExact(total, w[i].rows);
        }
        if (total == 0 || m == 0) return;
        Parallel.forChunks(total, MatVec.chunkRows(total), (a, b) -> {
            for (int i = 0, start = 0; i < n && start < b; start += w[i].rows, i++) {
                int r0 = Math.max(a, start) - start, r1 = Math.min(b, start + w[i].rows) - start;
                if (r0 < r1) w[i].rowRange(x, xOff, m, y[i], yOff[i], ldy[i], r0, r1);
            }
        });
    }

    /** Rows {@code [r0, r1)} of {@link #matVec} (overwriting) on the calling thread, arguments checked. */
    abstract void rowRange(float[] x, int xOff, int m, float[] y, int yOff, int ldy, int r0, int r1);

    /** {@link #matVec} for one input row: {@code y[yOff + r] (+)= Σ_c x[xOff + c] · W[r, c]}, arguments checked. */
    abstract void matVecOneRow(float[] x, int xOff, float[] y, int yOff, boolean accumulate);

    /** {@link #matVec} for m input rows (any m but 1), arguments checked. */
    abstract void matVecRows(float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate);

    /**
     * {@link #matVecSelected}'s pass, arguments checked: its {@code count · rows} output rows,
     * expert e's weights {@code e · stride} bytes past the view's start.
     */
    abstract void selectedRows(int[] experts, int eOff, int count, int rows, long stride, float[] x, int xOff, float[] y,
                               int yOff);

    /**
     * {@link #matVecSelectedSum}'s pass, arguments checked and {@code count > 0}: its {@code rows}
     * output rows, expert e's weights {@code e · stride} bytes past the view's start.
     */
    abstract void selectedSumRows(int[] experts, int eOff, int count, int rows, long stride, float[] x, int xOff,
                                  float[] y, int yOff, boolean accumulate);

    /**
     * {@link #matVecSegments}'s pass, arguments checked and {@code work > 0}: {@code chunks}
     * chunks of the cost line (each from {@link #segmentPoint} to the next), each segment piece
     * through the format's multi-row kernel; expert e's weights {@code e · stride} bytes past the
     * view's start.
     */
    abstract void segmentRows(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] start, int[] count,
                              int[] expert, int rows, long stride, long work, int rowCost, int chunks);

    /**
     * {@link #matVecPieceSums}'s pass, arguments checked and {@code n > 0}; expert e's weights
     * {@code e · stride} bytes past the view's start. Each slot's pieces go in two halves (its first
     * ⌈k/2⌉ pieces, then the rest), each summed in its own lane accumulators; a slot's sum for an
     * output is the lane sum of the two accumulators added, plus its two tail sums added. Two ways
     * to the same bits, by the number of slots and pieces:
     * <ul>
     * <li>at most {@link MatVec#PIECE_HALVES_SLOTS} slots (decode of one or two sequences) whose
     *     halves hold as many pieces in all (an even number of experts: MoA's 16): the work is
     *     (half, range of output rows), one task a thread (on 2 threads: each thread one half over
     *     all rows), so each task reads its experts' rows of its range as four long
     *     streams, one expert after the other, into accumulators for all rows; then a second pass
     *     adds the halves into the outputs. Blocks of 256 rows (all pieces for a block, then the
     *     next) read dsmoe-1b's f32 MoA output at about half the speed of a plain mat-vec on the AMD
     *     EPYC (short streams restarting every 32 KiB), two ranges of rows a half at 0.8x;
     * <li>otherwise (batched decode; unequal halves, as 9 experts give, where the halves' tasks
     *     would be unequal and two ranges a half measured no faster): the rows split over the threads in blocks of
     *     {@link MatVec#pieceBlock} rows, all pieces for a block in the thread's scratch, then the next,
     *     so the accumulators stay in cache whatever the batch.
     * </ul>
     */
    final void pieceSumRows(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] inRow, int[] expert,
                            int[] slot, int slots, int[] outRow, int rows, long stride) {
        int[] half = MatVec.pieceHalves(slot, n, slots);
        int inFirst = 0;
        for (int p = 0; p < n; p++) inFirst += 1 - half[p];
        if (slots <= MatVec.PIECE_HALVES_SLOTS && inFirst == n - inFirst) {
            pieceSumsByHalves(x, xOff, y, yOff, ldy, n, inRow, expert, slot, slots, outRow, rows, stride, half);
        } else {
            pieceSumsByBlocks(x, xOff, y, yOff, ldy, n, inRow, expert, slot, slots, outRow, rows, stride, half);
        }
    }

    private void pieceSumsByHalves(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] inRow, int[] expert,
                                   int[] slot, int slots, int[] outRow, int rows, long stride, int[] half) {
        // two tasks a range (its halves), as many tasks as threads: on 2 cores each thread reads its
        // experts' whole rows (more ranges, shorter streams and two threads on one expert, read slower)
        int ranges = Math.max(1, Math.min(Parallel.threads() / 2, rows / MatVec.ROW_GRAIN));
        int tiles = (rows + MatVec.TILE_ROWS - 1) / MatVec.TILE_ROWS, halfStride = tiles * MatVec.PIECE_FLOATS;
        float[] acc = MatVec.sharedPieceAccumulators(slots * 2 * tiles); // the caller's; tasks write disjoint tiles
        Parallel.forChunks(2 * ranges, 1, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                int h = i / ranges, j = i % ranges, r0 = MatVec.rangeStart(rows, ranges, j), r1 = MatVec.rangeStart(rows, ranges, j + 1);
                int first = r0 / MatVec.TILE_ROWS, count = MatVec.tiles(r0, r1);
                for (int s = 0; s < slots; s++) {
                    int a = (2 * s + h) * halfStride + first * MatVec.PIECE_FLOATS;
                    java.util.Arrays.fill(acc, a, a + count * MatVec.PIECE_FLOATS, 0f);
                }
                for (int p = 0; p < n; p++) {
                    if (half[p] != h) continue;
                    int xo = xOff + inRow[p] * cols, base = (2 * slot[p] + h) * halfStride + first * MatVec.PIECE_FLOATS;
                    pieceRange(expert[p], rows, stride, r0, r1, x, xo, acc, base);
                }
            }
        });
        // the halves added (tile t: tile t - first of its range), split over the threads where
        // that pays for a second parallel region (a small model's 64 tiles take a few µs)
        Parallel.RangeBody combine = (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                int j = 0;
                while (MatVec.rangeStart(rows, ranges, j + 1) / MatVec.TILE_ROWS <= t && j + 1 < ranges) j++;
                int r0 = MatVec.rangeStart(rows, ranges, j), r1 = MatVec.rangeStart(rows, ranges, j + 1), k = t - r0 / MatVec.TILE_ROWS;
                MatVec.addPieceSums(acc, t * MatVec.PIECE_FLOATS, 2 * halfStride, halfStride, slots, y, yOff, ldy, outRow,
                        MatVec.tileStart(r0, r1, k), MatVec.tileSize(r0, r1, k), MatVec.tileStep(r0, r1, k));
            }
        };
        if ((long) tiles * slots < MatVec.PARALLEL_COMBINE_TILES) {
            combine.run(0, tiles);
        } else {
            Parallel.forChunks(tiles, (tiles + Parallel.threads() - 1) / Parallel.threads(), combine);
        }
    }

    private void pieceSumsByBlocks(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] inRow, int[] expert,
                                   int[] slot, int slots, int[] outRow, int rows, long stride, int[] half) {
        int pb = MatVec.pieceBlock(slots);
        Parallel.forChunks(rows, MatVec.pieceChunk(rows, slots), (r0, r1) -> {
            int block = pb, halfStride = block / 4 * MatVec.PIECE_FLOATS, slotStride = 2 * halfStride;
            float[] acc = MatVec.pieceAccumulators(slots * 2 * block / 4);
            for (int b0 = r0; b0 < r1; b0 += block) { // MatVec.PIECE_BLOCK says why blocks, and spaced tiles in them
                int b1 = Math.min(r1, b0 + block), tiles = MatVec.tiles(b0, b1);
                MatVec.clearPieces(acc, slots * 2 * block / 4);
                for (int p = 0; p < n; ) {
                    int q = MatVec.pieceGroupEnd(expert, p, n);
                    if (q - p == 4) {
                        for (int k = 0; k < tiles; k++) {
                            int r = MatVec.tileStart(b0, b1, k), nr = MatVec.tileSize(b0, b1, k), step = MatVec.tileStep(b0, b1, k),
                                    at = k * MatVec.PIECE_FLOATS;
                            pieceTile4(expert[p], rows, stride, r, nr, step, x, xOff + inRow[p] * cols, xOff + inRow[p + 1] * cols,
                                    xOff + inRow[p + 2] * cols, xOff + inRow[p + 3] * cols, acc,
                                    slot[p] * slotStride + half[p] * halfStride + at, slot[p + 1] * slotStride + half[p + 1] * halfStride + at,
                                    slot[p + 2] * slotStride + half[p + 2] * halfStride + at, slot[p + 3] * slotStride + half[p + 3] * halfStride + at);
                        }
                    } else {
                        // piece by piece over the block's tiles: each accumulator still gets its pieces in order
                        for (int i = p; i < q; i++) {
                            pieceRange(expert[i], rows, stride, b0, b1, x, xOff + inRow[i] * cols, acc, slot[i] * slotStride + half[i] * halfStride);
                        }
                    }
                    p = q;
                }
                for (int k = 0; k < tiles; k++) {
                    MatVec.addPieceSums(acc, k * MatVec.PIECE_FLOATS, slotStride, halfStride, slots, y, yOff, ldy, outRow,
                            MatVec.tileStart(b0, b1, k), MatVec.tileSize(b0, b1, k), MatVec.tileStep(b0, b1, k));
                }
            }
        });
    }

    /**
     * Piece row {@code x[xo..]} against every tile of expert e's rows {@code [r0, r1)}
     * ({@link MatVec#tiles}), tile k into its 4 lane accumulators and 4 tail sums at
     * {@code acc[ao + k·PIECE_FLOATS..]}: the full tiles in one call of the format's kernel (an
     * expert row of 128 columns makes a tile so small that a call per tile cost as much as its
     * arithmetic), then the last, partial tile.
     */
    final void pieceRange(int e, int rows, long stride, int r0, int r1, float[] x, int xo, float[] acc, int ao) {
        int q = (r1 - r0) / MatVec.TILE_ROWS; // full tiles: tile k's rows r0 + k + j·q
        if (q > 0) pieceTiles(e, rows, stride, r0, q, MatVec.TILE_ROWS, q, x, xo, acc, ao);
        if (q < MatVec.tiles(r0, r1)) {
            pieceTiles(e, rows, stride, MatVec.tileStart(r0, r1, q), 1, MatVec.tileSize(r0, r1, q), MatVec.tileStep(r0, r1, q), x, xo,
                    acc, ao + q * MatVec.PIECE_FLOATS);
        }
    }

    /**
     * The format's piece kernel: piece row {@code x[xo..]} against {@code tiles} tiles of expert e,
     * tile k's {@code nr} weight rows {@code r + k + j·step} (j < nr), into the tile's 4 lane
     * accumulators and 4 tail sums at {@code acc[ao + k·PIECE_FLOATS..]} (loaded, added to in
     * column order, stored).
     */
    abstract void pieceTiles(int e, int rows, long stride, int r, int tiles, int nr, int step, float[] x, int xo, float[] acc, int ao);

    /** {@link #pieceTiles} of one tile for four pieces of expert e (four slots) at once: each weight vector loaded once for the four. */
    abstract void pieceTile4(int e, int rows, long stride, int r, int nr, int step, float[] x, int x0, int x1, int x2, int x3,
                             float[] acc, int a0, int a1, int a2, int a3);

    /**
     * {@code y[m, rows] = x[m, cols] · Wᵀ + beta · y} through the GEMM backend, the format's way
     * in: a native product where the backend reads the format, else panels unpacked to fp32
     * once per product into {@code mm}'s scratch.
     */
    abstract void gemm(Matmul mm, float[] x, int xOff, int ldx, int m, float[] y, int yOff, int ldy, float beta);

    /** The checks every format's mat-vec makes: contiguous rows, weights inside the segment, x and y large enough. */
    final void checkMatVec(float[] x, int xOff, int m, float[] y, int yOff, int ldy) {
        if (m < 0) throw new IllegalArgumentException("negative size");
        if (ld != cols) throw new IllegalArgumentException("mat-vec needs contiguous rows, got " + this);
        if (byteOffset() + (long) rows * cols * elementBytes() > segment().byteSize()) {
            throw new IllegalArgumentException("mat-vec: weights [" + rows + " x " + cols + "] at byte "
                    + byteOffset() + " exceed the segment of " + segment().byteSize() + " bytes");
        }
        if (xOff + (long) m * cols > x.length || (m > 0 && yOff + (long) (m - 1) * ldy + rows > y.length)) {
            throw new IllegalArgumentException("mat-vec: x or y too small for m=" + m);
        }
    }

    /** The checks of the selected-expert mat-vecs, which read {@code xFloats} floats of x from {@code xOff} and write {@code yFloats} of y from {@code yOff}. */
    final void checkSelected(int[] experts, int eOff, int count, float[] x, int xOff, long xFloats, float[] y, int yOff,
                             long yFloats) {
        if (count < 0) throw new IllegalArgumentException("negative size");
        if (ld != cols || byteOffset() + (long) rows * cols * elementBytes() > segment().byteSize()) {
            throw new IllegalArgumentException("mat-vec: " + this + " at byte " + byteOffset() + " is not contiguous inside its segment of "
                    + segment().byteSize() + " bytes");
        }
        for (int i = 0; i < count; i++) {
            int e = experts[eOff + i];
            if (e < 0 || e >= experts()) {
                throw new IllegalArgumentException("mat-vec: expert " + e + " is not one of the " + experts() + " experts");
            }
        }
        if (xOff + xFloats > x.length || yOff + yFloats > y.length) {
            throw new IllegalArgumentException("mat-vec: x or y too small for " + count + " experts");
        }
    }

    /** The checks of {@link #matVecSegments}; {@code rows} is R, the rows of one expert. */
    final void checkSegments(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] start, int[] count,
                             int[] expert, int rows) {
        if (n < 0 || n > start.length || n > count.length || n > expert.length) {
            throw new IllegalArgumentException("segments: " + n + " segments, arrays of " + start.length + ", "
                    + count.length + " and " + expert.length);
        }
        if (ldy < rows) throw new IllegalArgumentException("segments: output stride " + ldy + " < " + rows + " rows of an expert");
        if (ld != cols || byteOffset() + (long) this.rows * cols * elementBytes() > segment().byteSize()) {
            throw new IllegalArgumentException("mat-vec: " + this + " at byte " + byteOffset() + " is not contiguous inside its segment of "
                    + segment().byteSize() + " bytes");
        }
        for (int i = 0; i < n; i++) {
            if (start[i] < 0 || count[i] < 0) {
                throw new IllegalArgumentException("segment " + i + ": start " + start[i] + ", count " + count[i]);
            }
            if (count[i] == 0) continue;
            if (expert[i] < 0 || expert[i] >= experts()) {
                throw new IllegalArgumentException("segment " + i + ": expert " + expert[i] + " is not one of the " + experts() + " experts");
            }
            long end = (long) start[i] + count[i];
            if (xOff + end * cols > x.length || yOff + (end - 1) * ldy + rows > y.length) {
                throw new IllegalArgumentException("segment " + i + ": rows [" + start[i] + ", " + end + ") exceed the input or output");
            }
        }
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + " [" + rows + " x " + cols + (ld != cols ? ", ld " + ld : "") + "]"
                + (experts != null ? " in " + experts.length + " experts" : "");
    }
}
