package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * A bf16 weight over a memory segment, little-endian (mapped from a checkpoint or converted at
 * load). Its mat-vec widens each lane block to fp32 as it reads it (for 8 inputs or more, a tile
 * of 4 rows once into an fp32 scratch); GEMM gets its rows unpacked to fp32 a block at a time,
 * each weight once per product.
 */
public final class Bf16Tensor extends TensorView {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Shorts for one float vector's worth of bf16 lanes (half the vector width in bits). */
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfShort BF16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);

    private final MemorySegment segment;
    private final long byteOffset;

    private Bf16Tensor(MemorySegment segment, long byteOffset, int rows, int cols, int ld) {
        super(rows, cols, ld);
        this.segment = segment;
        this.byteOffset = byteOffset;
    }

    /** The {@code [rows, cols]} matrix at byte {@code byteOffset} of a segment, rows contiguous. */
    public static Bf16Tensor over(MemorySegment segment, long byteOffset, int rows, int cols) {
        return new Bf16Tensor(segment, byteOffset, rows, cols, cols);
    }

    @Override
    MatVec.DType format() {
        return MatVec.DType.BF16;
    }

    /** Writes element {@code i} of a bf16 segment, rounded to nearest even (converting weights at load). */
    public static void store(MemorySegment segment, long i, float v) {
        segment.setAtIndex(BF16, i, Bf16.fromFloat(v));
    }

    @Override
    Bf16Tensor slice(long offset, int rows, int cols, int ld) {
        return new Bf16Tensor(segment, byteOffset + 2 * offset, rows, cols, ld);
    }

    @Override
    public Bf16Tensor expert(int e) {
        return (Bf16Tensor) super.expert(e);
    }

    @Override
    public int elementBytes() {
        return 2;
    }

    @Override
    public MemorySegment segment() {
        return segment;
    }

    @Override
    public long byteOffset() {
        return byteOffset;
    }

    @Override
    public void copyRow(int r, float[] dst, int dstOff) {
        unpack(segment, byteOffset + 2L * r * ld, cols, dst, dstOff);
    }

    /** One row widened to fp32 into {@code dst}: a lane block at a time, the tail scalar (exact either way). */
    private static void unpack(MemorySegment w, long off, int cols, float[] dst, int dstOff) {
        int c = 0;
        for (int bound = F.loopBound(cols); c < bound; c += L) {
            ((IntVector) ShortVector.fromMemorySegment(S, w, off + 2L * c, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, dstOff + c);
        }
        for (; c < cols; c++) dst[dstOff + c] = Bf16.toFloat(w.get(BF16, off + 2L * c));
    }

    /** The scratch {@link #gemm} unpacks a {@code [rows, cols]} weight into. */
    static long gemmScratchFloats(long rows, long cols) {
        return OneDnn.get() != null ? 0 : Matmul.scratchFloats(rows, cols); // oneDNN's scratch is native, per thread
    }

    /**
     * Unpacks {@link Matmul#unpackRows} weight rows at a time into the fp32 scratch (rows in
     * parallel, vectorized), one product per block.
     */
    @Override
    void gemm(Matmul mm, float[] x, int xOff, int ldx, int m, float[] y, int yOff, int ldy, float beta) {
        OneDnn dnn = mm.oneDnn();
        if (dnn != null && OneDnn.reads(this)) {
            dnn.product(this, x, xOff, ldx, m, y, yOff, ldy, beta != 0);
            return;
        }
        int block = Matmul.unpackRows(rows, cols);
        float[] scratch = mm.scratch(block * cols);
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols, ld = this.ld;
        for (int r0 = 0; r0 < rows; r0 += block) {
            int b = Math.min(block, rows - r0), first = r0;
            Parallel.forRange(b, 16, (i0, i1) -> {
                for (int i = i0; i < i1; i++) unpack(w, wOff + 2L * (first + i) * ld, cols, scratch, i * cols);
            });
            Kernels.gemm().sgemm(false, true, m, b, cols, 1f, x, xOff, ldx, scratch, 0, cols, beta, y, yOff + r0, ldy);
        }
    }

    // The parallel loops over the row kernel, one lambda each (TensorView.matVec says why);
    // TensorView has checked the arguments and worked out the experts' offsets.

    @Override
    void rowRange(float[] x, int xOff, int m, float[] y, int yOff, int ldy, int r0, int r1) {
        rows(segment, byteOffset, cols, x, xOff, m, y, yOff, ldy, false, r0, r1);
    }

    @Override
    void matVecOneRow(float[] x, int xOff, float[] y, int yOff, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols;
        Parallel.forChunks(rows, MatVec.chunkRows(rows), (r0, r1) -> rows(w, wOff, cols, x, xOff, 1, y, yOff, 0, accumulate, r0, r1));
    }

    @Override
    void matVecRows(float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols;
        Parallel.forChunks(rows, MatVec.chunkRows(rows),
                (r0, r1) -> rows(w, wOff, cols, x, xOff, m, y, yOff, ldy, accumulate, r0, r1));
    }

    @Override
    void segmentRows(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] start, int[] count, int[] expert,
                     int rows, long stride, long work, int rowCost, int chunks) {
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols;
        Parallel.forChunks(chunks, 1, (c0, c1) -> {
            for (int ch = c0; ch < c1; ch++) {
                long from = segmentPoint(work * ch / chunks, n, count, rows, rowCost);
                long to = segmentPoint(work * (ch + 1) / chunks, n, count, rows, rowCost);
                for (int i = (int) (from >>> 32), last = (int) (to >>> 32); i <= last && i < n; i++) {
                    int ra = i == (int) (from >>> 32) ? (int) from : 0, rb = i == last ? (int) to : rows;
                    if (count[i] > 0 && ra < rb) {
                        rows(w, wOff + expert[i] * stride, cols, x, xOff + start[i] * cols, count[i], y, yOff + start[i] * ldy,
                                ldy, false, ra, rb);
                    }
                }
            }
        });
    }

    @Override
    void selectedRows(int[] experts, int eOff, int count, int rows, long stride, float[] x, int xOff, float[] y, int yOff) {
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols;
        Parallel.forRange(count * rows, MatVec.ROW_GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                int e = experts[eOff + i / rows], r = i % rows;
                row(w, wOff + e * stride + 2L * r * cols, cols, x, xOff, 1, y, yOff + i, 0, false);
            }
        });
    }

    @Override
    void selectedSumRows(int[] experts, int eOff, int count, int rows, long stride, float[] x, int xOff, float[] y,
                         int yOff, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols;
        Parallel.forRange(rows, MatVec.ROW_GRAIN, (r0, r1) -> {
            for (int i = 0; i < count; i++) {
                long base = wOff + experts[eOff + i] * stride;
                boolean acc = accumulate || i > 0;
                for (int r = r0; r < r1; r++) row(w, base + 2L * r * cols, cols, x, xOff + i * cols, 1, y, yOff + r, 0, acc);
            }
        });
    }

    @Override
    void pieceTiles(int e, int rows, long stride, int r, int tiles, int nr, int step, float[] x, int xo, float[] acc, int ao) {
        pieces(segment, byteOffset + e * stride + 2L * r * cols, tiles, nr, step, cols, x, xo, acc, ao);
    }

    @Override
    void pieceTile4(int e, int rows, long stride, int r, int nr, int step, float[] x, int x0, int x1, int x2, int x3,
                    float[] acc, int a0, int a1, int a2, int a3) {
        piece4(segment, byteOffset + e * stride + 2L * r * cols, nr, step, cols, x, x0, x1, x2, x3, acc, a0, a1, a2, a3);
    }


    // A piece's tiles into its slot's accumulators (tile k's at ao + k·PIECE_FLOATS: loaded, its columns added
    // in order, stored), tile k's rows k + min(j, nr - 1)·step from off: MatVec.tiles' full tiles of a range in
    // one call (nr 4, step the tile count), or one tile as it comes. An expert row of 128 columns makes a tile
    // so small that a call per tile cost about as much as its arithmetic.
    private static void pieces(MemorySegment w, long off, int tiles, int nr, int step, int cols, float[] x, int xo, float[] acc,
                               int ao) {
        int bound = F.loopBound(cols);
        for (int k = 0; k < tiles; k++) {
            long t = off + 2L * k * cols;
            long o0 = t, o1 = tileRow(t, 1, nr, step, cols), o2 = tileRow(t, 2, nr, step, cols), o3 = tileRow(t, 3, nr, step, cols);
            int a = ao + k * MatVec.PIECE_FLOATS;
            FloatVector a0 = FloatVector.fromArray(F, acc, a), a1 = FloatVector.fromArray(F, acc, a + L),
                    a2 = FloatVector.fromArray(F, acc, a + 2 * L), a3 = FloatVector.fromArray(F, acc, a + 3 * L);
            int c = 0;
            for (; c < bound; c += L) {
                long b = 2L * c;
                FloatVector xv = FloatVector.fromArray(F, x, xo + c);
                a0 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o0 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                        .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
                a1 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o1 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                        .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a1);
                a2 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o2 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                        .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a2);
                a3 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o3 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                        .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a3);
            }
            a0.intoArray(acc, a);
            a1.intoArray(acc, a + L);
            a2.intoArray(acc, a + 2 * L);
            a3.intoArray(acc, a + 3 * L);
            if (c < cols) pieceTail(w, t, nr, step, c, cols, x, xo, acc, a);
        }
    }

    // Four pieces of one expert (four slots) over the same 4 weight rows: each weight vector loaded once for the four.
    private static void piece4(MemorySegment w, long off, int nr, int step, int cols, float[] x, int x0, int x1, int x2,
                               int x3, float[] acc, int b0, int b1, int b2, int b3) {
        long o0 = off, o1 = tileRow(off, 1, nr, step, cols), o2 = tileRow(off, 2, nr, step, cols), o3 = tileRow(off, 3, nr, step, cols);
        FloatVector a00 = FloatVector.fromArray(F, acc, b0), a01 = FloatVector.fromArray(F, acc, b0 + L),
                a02 = FloatVector.fromArray(F, acc, b0 + 2 * L), a03 = FloatVector.fromArray(F, acc, b0 + 3 * L),
                a10 = FloatVector.fromArray(F, acc, b1), a11 = FloatVector.fromArray(F, acc, b1 + L),
                a12 = FloatVector.fromArray(F, acc, b1 + 2 * L), a13 = FloatVector.fromArray(F, acc, b1 + 3 * L),
                a20 = FloatVector.fromArray(F, acc, b2), a21 = FloatVector.fromArray(F, acc, b2 + L),
                a22 = FloatVector.fromArray(F, acc, b2 + 2 * L), a23 = FloatVector.fromArray(F, acc, b2 + 3 * L),
                a30 = FloatVector.fromArray(F, acc, b3), a31 = FloatVector.fromArray(F, acc, b3 + L),
                a32 = FloatVector.fromArray(F, acc, b3 + 2 * L), a33 = FloatVector.fromArray(F, acc, b3 + 3 * L);
        int c = 0;
        for (int bound = F.loopBound(cols); c < bound; c += L) {
            long b = 2L * c;
            FloatVector w0 = ((IntVector) ShortVector.fromMemorySegment(S, w, o0 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector w1 = ((IntVector) ShortVector.fromMemorySegment(S, w, o1 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector w2 = ((IntVector) ShortVector.fromMemorySegment(S, w, o2 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector w3 = ((IntVector) ShortVector.fromMemorySegment(S, w, o3 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector xv = FloatVector.fromArray(F, x, x0 + c);
            a00 = xv.fma(w0, a00);
            a01 = xv.fma(w1, a01);
            a02 = xv.fma(w2, a02);
            a03 = xv.fma(w3, a03);
            xv = FloatVector.fromArray(F, x, x1 + c);
            a10 = xv.fma(w0, a10);
            a11 = xv.fma(w1, a11);
            a12 = xv.fma(w2, a12);
            a13 = xv.fma(w3, a13);
            xv = FloatVector.fromArray(F, x, x2 + c);
            a20 = xv.fma(w0, a20);
            a21 = xv.fma(w1, a21);
            a22 = xv.fma(w2, a22);
            a23 = xv.fma(w3, a23);
            xv = FloatVector.fromArray(F, x, x3 + c);
            a30 = xv.fma(w0, a30);
            a31 = xv.fma(w1, a31);
            a32 = xv.fma(w2, a32);
            a33 = xv.fma(w3, a33);
        }
        a00.intoArray(acc, b0);
        a01.intoArray(acc, b0 + L);
        a02.intoArray(acc, b0 + 2 * L);
        a03.intoArray(acc, b0 + 3 * L);
        a10.intoArray(acc, b1);
        a11.intoArray(acc, b1 + L);
        a12.intoArray(acc, b1 + 2 * L);
        a13.intoArray(acc, b1 + 3 * L);
        a20.intoArray(acc, b2);
        a21.intoArray(acc, b2 + L);
        a22.intoArray(acc, b2 + 2 * L);
        a23.intoArray(acc, b2 + 3 * L);
        a30.intoArray(acc, b3);
        a31.intoArray(acc, b3 + L);
        a32.intoArray(acc, b3 + 2 * L);
        a33.intoArray(acc, b3 + 3 * L);
        if (c < cols) {
            pieceTail(w, off, nr, step, c, cols, x, x0, acc, b0);
            pieceTail(w, off, nr, step, c, cols, x, x1, acc, b1);
            pieceTail(w, off, nr, step, c, cols, x, x2, acc, b2);
            pieceTail(w, off, nr, step, c, cols, x, x3, acc, b3);
        }
    }

    // The columns past the last lane block of a piece's rows, into the slot's tail sums.
    private static void pieceTail(MemorySegment w, long off, int nr, int step, int c, int cols, float[] x, int xo, float[] acc,
                                  int ao) {
        for (int j = 0; j < nr; j++) {
            long o = off + 2L * j * step * cols;
            float t = acc[ao + 4 * L + j];
            for (int i = c; i < cols; i++) t += Bf16.toFloat(w.get(BF16, o + 2L * i)) * x[xo + i];
            acc[ao + 4 * L + j] = t;
        }
    }

    /**
     * Weight rows {@code [r0, r1)} (row r at byte {@code wOff + 2·r·cols}) against m input rows,
     * in tiles of 4 weight rows: each tile's rows read once from memory for all m inputs (from
     * the cache for every group after the first), 4 inputs at a time ({@link #tile}), the last
     * m mod 4 one at a time ({@link #tile1}). Every output is the single-row kernel's, bit for bit.
     */
    static void rows(MemorySegment w, long wOff, int cols, float[] x, int xOff, int m, float[] y, int yOff, int ldy,
                     boolean acc, int r0, int r1) {
        if (m >= MatVec.UNPACK_MIN_INPUTS) {
            unpackedRows(w, wOff, cols, x, xOff, m, y, yOff, ldy, acc, r0, r1);
            return;
        }
        float[] sums = MatVec.tileSums();
        for (int k = 0, tiles = MatVec.tiles(r0, r1); k < tiles; k++) { // spaced rows: MatVec.tiles says why
            int r = MatVec.tileStart(r0, r1, k), nr = MatVec.tileSize(r0, r1, k), step = MatVec.tileStep(r0, r1, k), i = 0;
            long off = wOff + 2L * r * cols;
            for (; i + 4 <= m; i += 4) tile(w, off, nr, step, cols, x, xOff + i * cols, y, yOff + i * ldy + r, ldy, acc, sums);
            for (; i < m; i++) tile1(w, off, nr, step, cols, x, xOff + i * cols, y, yOff + i * ldy + r, acc, sums);
        }
    }

    /*
     * The tiles. Each output keeps the single-row kernel's order exactly (its own lane
     * accumulator over the column blocks in order, Simd.addLanes's sum, the same scalar tail and
     * store), so its bits depend neither on the tile it falls in, nor on m, nor on the thread
     * split: a sequence's result does not depend on the batch it is in. A tile of nr < 4 weight
     * rows reads its last row again in place of the missing ones and stores only its nr rows.
     * The input count is fixed per method (4 or 1), not a branch in the loop: a loop whose
     * accumulators are updated under a branch both taken and not taken boxed its vectors.
     */

    /** Byte offset of tile row j: row min(j, nr-1) of the tile at off, its rows step rows apart. */
    private static long tileRow(long off, int j, int nr, int step, int cols) {
        return off + 2L * Math.min(j, nr - 1) * step * cols;
    }

    /**
     * {@link #rows} for many inputs: each tile of 4 weight rows widened to fp32 once (exactly, as
     * {@link #tile} widens it), then {@link F32Tensor#rows} over it: the same loop bounds, so
     * every output has the single-row kernel's bits.
     */
    private static void unpackedRows(MemorySegment w, long wOff, int cols, float[] x, int xOff, int m, float[] y,
                                     int yOff, int ldy, boolean acc, int r0, int r1) {
        MatVec.Unpacked u = MatVec.unpacked(MatVec.TILE_ROWS * cols);
        float[] a = u.floats;
        for (int r = r0; r < r1; r += MatVec.TILE_ROWS) {
            int nr = Math.min(MatVec.TILE_ROWS, r1 - r);
            for (int j = 0; j < nr; j++) unpack(w, wOff + 2L * (r + j) * cols, cols, a, j * cols);
            F32Tensor.rows(u.segment, 0, cols, x, xOff, m, y, yOff + r, ldy, acc, 0, nr);
        }
    }

    // 4 weight rows x 4 input rows: 16 accumulators, a{i}{j} for input i and weight row j, each
    // weight vector loaded once for the 4 inputs and each input vector once for the 4 rows.
    private static void tile(MemorySegment w, long off, int nr, int step, int cols, float[] x, int xo,
                             float[] y, int yo, int ldy, boolean acc, float[] sums) {
        long o0 = off, o1 = tileRow(off, 1, nr, step, cols), o2 = tileRow(off, 2, nr, step, cols), o3 = tileRow(off, 3, nr, step, cols);
        int x1 = xo + cols, x2 = x1 + cols, x3 = x2 + cols;
        FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,
                a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        int c = 0;
        for (int bound = F.loopBound(cols); c < bound; c += L) {
            long b = 2L * c; // bf16 -> fp32 is a 16-bit left shift of the bits
            FloatVector w0 = ((IntVector) ShortVector.fromMemorySegment(S, w, o0 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector w1 = ((IntVector) ShortVector.fromMemorySegment(S, w, o1 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector w2 = ((IntVector) ShortVector.fromMemorySegment(S, w, o2 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector w3 = ((IntVector) ShortVector.fromMemorySegment(S, w, o3 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector xv = FloatVector.fromArray(F, x, xo + c);
            a00 = xv.fma(w0, a00);
            a01 = xv.fma(w1, a01);
            a02 = xv.fma(w2, a02);
            a03 = xv.fma(w3, a03);
            xv = FloatVector.fromArray(F, x, x1 + c);
            a10 = xv.fma(w0, a10);
            a11 = xv.fma(w1, a11);
            a12 = xv.fma(w2, a12);
            a13 = xv.fma(w3, a13);
            xv = FloatVector.fromArray(F, x, x2 + c);
            a20 = xv.fma(w0, a20);
            a21 = xv.fma(w1, a21);
            a22 = xv.fma(w2, a22);
            a23 = xv.fma(w3, a23);
            xv = FloatVector.fromArray(F, x, x3 + c);
            a30 = xv.fma(w0, a30);
            a31 = xv.fma(w1, a31);
            a32 = xv.fma(w2, a32);
            a33 = xv.fma(w3, a33);
        }
        // The accumulators go through the thread's scratch to MatVec.tileLaneSums: 16 lane sums
        // inlined here made this method too large for C2 to inline them all
        // (NodeCountInliningCutoff), and a vector passed to a call not inlined is boxed.
        a00.intoArray(sums, 0);
        a01.intoArray(sums, L);
        a02.intoArray(sums, 2 * L);
        a03.intoArray(sums, 3 * L);
        a10.intoArray(sums, 4 * L);
        a11.intoArray(sums, 5 * L);
        a12.intoArray(sums, 6 * L);
        a13.intoArray(sums, 7 * L);
        a20.intoArray(sums, 8 * L);
        a21.intoArray(sums, 9 * L);
        a22.intoArray(sums, 10 * L);
        a23.intoArray(sums, 11 * L);
        a30.intoArray(sums, 12 * L);
        a31.intoArray(sums, 13 * L);
        a32.intoArray(sums, 14 * L);
        a33.intoArray(sums, 15 * L);
        MatVec.tileLaneSums(sums);
        for (int j = 0; j < nr; j++) {
            float t0 = MatVec.tileSum(sums, j), t1 = MatVec.tileSum(sums, 4 + j), t2 = MatVec.tileSum(sums, 8 + j),
                    t3 = MatVec.tileSum(sums, 12 + j);
            if (c < cols) finish(w, off + 2L * j * step * cols, c, cols, x, xo, 4, y, yo + j * step, ldy, acc, t0, t1, t2, t3);
            else MatVec.store(y, yo + j * step, ldy, 4, acc, t0, t1, t2, t3);
        }
    }

    // 4 weight rows x 1 input row: 4 accumulators, their lane sums taken here.
    private static void tile1(MemorySegment w, long off, int nr, int step, int cols, float[] x, int xo, float[] y, int yo,
                              boolean acc, float[] sums) {
        long o0 = off, o1 = tileRow(off, 1, nr, step, cols), o2 = tileRow(off, 2, nr, step, cols), o3 = tileRow(off, 3, nr, step, cols);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int c = 0;
        for (int bound = F.loopBound(cols); c < bound; c += L) {
            long b = 2L * c;
            FloatVector xv = FloatVector.fromArray(F, x, xo + c);
            a0 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o0 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
            a1 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o1 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a1);
            a2 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o2 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a2);
            a3 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o3 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a3);
        }
        // lane sums through the thread's scratch, as in tile (see Q8Tensor.tile1: addLanes calls here may not be inlined)
        a0.intoArray(sums, 0);
        a1.intoArray(sums, L);
        a2.intoArray(sums, 2 * L);
        a3.intoArray(sums, 3 * L);
        MatVec.tileLaneSums4(sums);
        finish1(w, off, c, cols, x, xo, y, yo, acc, nr, step, MatVec.tileSum4(sums, 0), MatVec.tileSum4(sums, 1), MatVec.tileSum4(sums, 2),
                MatVec.tileSum4(sums, 3));
    }

    // tile1's end: each of its nr rows' scalar tail and store, as the single-row kernel's.
    private static void finish1(MemorySegment w, long off, int c, int cols, float[] x, int xo, float[] y, int yo,
                                boolean acc, int nr, int step, float t0, float t1, float t2, float t3) {
        for (int j = 0; j < nr; j++) {
            float t = j == 0 ? t0 : j == 1 ? t1 : j == 2 ? t2 : t3;
            finish(w, off + 2L * j * step * cols, c, cols, x, xo, 1, y, yo + j * step, 0, acc, t, 0f, 0f, 0f);
        }
    }

    // One weight row against up to four input rows: the weight vector is loaded once per lane block.
    private static void row(MemorySegment w, long off, int cols, float[] x, int xo, int mb,
                            float[] y, int yo, int ldy, boolean acc) {
        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
        int c = 0, bound = F.loopBound(cols);
        for (; c < bound; c += L) {
            // bf16 -> fp32 is a 16-bit left shift of the bits.
            ShortVector h = ShortVector.fromMemorySegment(S, w, off + 2L * c, LE);
            FloatVector wv = ((IntVector) h.convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            s0 = FloatVector.fromArray(F, x, xo + c).fma(wv, s0);
            if (mb > 1) s1 = FloatVector.fromArray(F, x, xo + cols + c).fma(wv, s1);
            if (mb > 2) s2 = FloatVector.fromArray(F, x, xo + 2 * cols + c).fma(wv, s2);
            if (mb > 3) s3 = FloatVector.fromArray(F, x, xo + 3 * cols + c).fma(wv, s3);
        }
        // lane sums here, not in finish: a vector passed to a call C2 does not inline is boxed
        float t0 = Simd.addLanes(s0), t1 = mb > 1 ? Simd.addLanes(s1) : 0f, t2 = mb > 2 ? Simd.addLanes(s2) : 0f,
                t3 = mb > 3 ? Simd.addLanes(s3) : 0f;
        finish(w, off, c, cols, x, xo, mb, y, yo, ldy, acc, t0, t1, t2, t3);
    }

    // The end of a row: the scalar tail from column c on added to the lane sums t0..t(mb-1), and the store.
    private static void finish(MemorySegment w, long off, int c, int cols, float[] x, int xo,
                               int mb, float[] y, int yo, int ldy, boolean acc,
                               float t0, float t1, float t2, float t3) {
        for (; c < cols; c++) {
            float wv = Bf16.toFloat(w.get(BF16, off + 2L * c));
            t0 += wv * x[xo + c];
            if (mb > 1) t1 += wv * x[xo + cols + c];
            if (mb > 2) t2 += wv * x[xo + 2 * cols + c];
            if (mb > 3) t3 += wv * x[xo + 3 * cols + c];
        }
        MatVec.store(y, yo, ldy, mb, acc, t0, t1, t2, t3);
    }
}
