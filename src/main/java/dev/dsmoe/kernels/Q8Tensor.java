package dev.dsmoe.kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * An int8 weight in llama.cpp's Q8_0 layout: each row cut into blocks of {@link #BLOCK} weights
 * (the last block of a row shorter when the row length is not a multiple of 32), one scale per
 * block, weight = scale · q with q in int8 ([-127, 127]). Quantized from fp32 at load: per block
 * scale = max|w| / 127, q = round(w / scale).
 *
 * <p>In memory a {@code [rows, cols]} matrix is its quants, one byte per weight row after row,
 * then (from the next multiple of 64 bytes) its scales, {@code ⌈cols/32⌉} per row, as fp32
 * little-endian. llama.cpp stores the scales as fp16 interleaved with the quants (34 bytes a
 * block); fp32 here costs 2 bytes more per block (1.125 instead of 1.0625 bytes per weight) and
 * saves the kernel an fp16 conversion per block and the quantizer a second rounding. A view may
 * also find its scales at any other offset of the same segment: a quantized checkpoint holds
 * the quants and the scales as two tensors of one mapped file.
 *
 * <p>The mat-vec widens each lane block of quants to fp32 and scales it by its block's scale as
 * it reads it (for 8 inputs or more, a tile of 4 rows once into an fp32 scratch); GEMM gets its
 * rows dequantized to fp32 a block at a time, each weight once per product.
 */
public final class Q8Tensor extends TensorView {

    /** Weights per block, as Q8_0. */
    public static final int BLOCK = 32;

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** The vector loop: needs a byte vector of a quarter of the float width (64 bits at least) and pairs of lane blocks that tile a block. */
    private static final boolean VECTOR = F.vectorBitSize() >= 256 && BLOCK % (2 * L) == 0;
    private static final VectorSpecies<Byte> B = VECTOR
            ? VectorSpecies.of(byte.class, VectorShape.forBitSize(F.vectorBitSize() / 4)) : ByteVector.SPECIES_64;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat SCALE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    private final MemorySegment segment;
    /** Byte offsets of the quant of element [0, 0] and of row 0's first scale. */
    private final long byteOffset, scaleOffset;

    private Q8Tensor(MemorySegment segment, long byteOffset, long scaleOffset, int rows, int cols, int ld) {
        super(rows, cols, ld);
        this.segment = segment;
        this.byteOffset = byteOffset;
        this.scaleOffset = scaleOffset;
    }

    /** The {@code [rows, cols]} matrix at byte {@code byteOffset} of a segment, laid out as {@link #write} writes it. */
    public static Q8Tensor over(MemorySegment segment, long byteOffset, int rows, int cols) {
        return over(segment, byteOffset, byteOffset + scaleOffset(rows, cols), rows, cols);
    }

    /**
     * The {@code [rows, cols]} matrix whose quants (one byte a weight, row after row) start at byte
     * {@code byteOffset} of a segment and whose scales ({@code ⌈cols/32⌉} fp32 a row, row after row)
     * start at byte {@code scaleOffset} of the same segment: a quantized checkpoint's two tensors,
     * viewed in place in the mapped file.
     */
    public static Q8Tensor over(MemorySegment segment, long byteOffset, long scaleOffset, int rows, int cols) {
        return new Q8Tensor(segment, byteOffset, scaleOffset, rows, cols, cols);
    }

    /** Where {@link #write} puts the scales of a {@code [rows, cols]} matrix: the quants' bytes rounded up to 64. */
    public static long scaleOffset(long rows, long cols) {
        return quantBytes(rows, cols);
    }

    /** Blocks in a row of {@code cols} weights. */
    static long blocks(long cols) {
        return (cols + BLOCK - 1) / BLOCK;
    }

    private static long quantBytes(long rows, long cols) {
        return (rows * cols + 63) & ~63L;
    }

    /** Bytes of a {@code [rows, cols]} matrix: the quants (padded to 64 bytes) and the fp32 scales. */
    public static long bytes(long rows, long cols) {
        return quantBytes(rows, cols) + 4 * rows * blocks(cols);
    }

    /**
     * Quantizes the {@code [rows, cols]} matrix whose element {@code i} (row-major) {@code src} gives
     * into {@code dst} ({@link #bytes} of them), rows in parallel.
     */
    public static void write(MemorySegment dst, int rows, int cols, MatVec.DType.Element src) {
        long sOff = quantBytes(rows, cols), nb = blocks(cols);
        Parallel.forRange(rows, 16, (r0, r1) -> {
            float[] w = new float[BLOCK];
            for (int r = r0; r < r1; r++) {
                for (long b = 0; b < nb; b++) {
                    int c0 = (int) (b * BLOCK), n = Math.min(BLOCK, cols - c0);
                    long base = (long) r * cols + c0;
                    float max = 0f;
                    for (int j = 0; j < n; j++) {
                        w[j] = src.at(base + j);
                        max = Math.max(max, Math.abs(w[j]));
                    }
                    float scale = max / 127f;
                    for (int j = 0; j < n; j++) dst.set(ValueLayout.JAVA_BYTE, base + j, quantize(w[j], scale));
                    dst.set(SCALE, sOff + 4 * ((long) r * nb + b), scale);
                }
            }
        });
    }

    /** {@code round(w / scale)} in [-127, 127]; 0 for a zero scale (an all-zero block). */
    static byte quantize(float w, float scale) {
        if (scale == 0f) return 0;
        return (byte) Math.clamp(Math.round(w / scale), -127, 127);
    }

    /** A new {@code [rows, cols]} Q8 matrix quantized from {@code w} (row-major), in {@code arena}. */
    public static Q8Tensor quantize(Arena arena, float[] w, int rows, int cols) {
        MemorySegment seg = arena.allocate(bytes(rows, cols), 64);
        write(seg, rows, cols, i -> w[Math.toIntExact(i)]);
        return over(seg, 0, rows, cols);
    }

    /** Byte offset in {@link #segment()} of row 0's first scale (the rows' scales follow, {@link #blocksPerRow()} each). */
    public long scaleByteOffset() {
        return scaleOffset;
    }

    /** Scales per row: {@code ⌈cols/32⌉}. */
    public int blocksPerRow() {
        return (int) blocks(cols);
    }

    /** The scale of block {@code b} of row {@code r}. */
    public float scale(int r, int b) {
        return segment.get(SCALE, scaleOffset + 4 * ((long) r * blocks(cols) + b));
    }

    /** The quant of element {@code [r, c]}. */
    public byte quant(int r, int c) {
        return segment.get(ValueLayout.JAVA_BYTE, byteOffset + (long) r * ld + c);
    }

    @Override
    MatVec.DType format() {
        return MatVec.DType.Q8_0;
    }

    @Override
    Q8Tensor copySideBySide(MemorySegment dst, int n, int r) {
        if (cols % BLOCK != 0) {
            throw new IllegalArgumentException("Q8_0 experts of " + cols + " columns cannot lie side by side: a block of "
                    + BLOCK + " would straddle two experts");
        }
        long nb = cols / BLOCK, wide = (long) n * cols, sDst = scaleOffset(r, wide);
        Parallel.forRange(r, 64, (r0, r1) -> {
            for (int i = r0; i < r1; i++) {
                for (int e = 0; e < n; e++) {
                    long g = (long) e * r + i; // the row in the stacked view
                    MemorySegment.copy(segment, byteOffset + g * cols, dst, i * wide + (long) e * cols, cols);
                    MemorySegment.copy(segment, scaleOffset + 4 * g * nb, dst, sDst + 4 * (i * n * nb + e * nb), 4 * nb);
                }
            }
        });
        return over(dst, 0, r, (int) wide);
    }

    @Override
    Q8Tensor slice(long offset, int rows, int cols, int ld) {
        if (cols != this.cols || ld != this.ld || offset % ld != 0) {
            throw new UnsupportedOperationException("a Q8 view slices whole rows only, not [" + rows + " x " + cols
                    + ", ld " + ld + "] at element " + offset + " of " + this);
        }
        return new Q8Tensor(segment, byteOffset + offset, scaleOffset + 4 * (offset / ld) * blocks(cols), rows, cols, ld);
    }

    @Override
    public Q8Tensor expert(int e) {
        return (Q8Tensor) super.expert(e);
    }

    /** Bytes of one quant (the scales lie after the quants, outside the range the checks test). */
    @Override
    public int elementBytes() {
        return 1;
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
        dequantize(segment, byteOffset + (long) r * ld, scaleOffset + 4L * r * blocks(cols), cols, dst, dstOff);
    }

    /** One row's scale · q into {@code dst}: whole blocks a lane block at a time, the short last block scalar (same values). */
    private static void dequantize(MemorySegment w, long off, long soff, int cols, float[] dst, int dstOff) {
        int c0 = 0;
        if (VECTOR) {
            for (int bound = cols / BLOCK * BLOCK; c0 < bound; c0 += L) {
                ((FloatVector) ByteVector.fromMemorySegment(B, w, off + c0, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(w.get(SCALE, soff + 4L * (c0 / BLOCK))).intoArray(dst, dstOff + c0);
            }
        }
        for (int b = c0 / BLOCK; c0 < cols; c0 += BLOCK, b++) {
            float s = w.get(SCALE, soff + 4L * b);
            for (int c = c0, end = Math.min(cols, c0 + BLOCK); c < end; c++) {
                dst[dstOff + c] = s * w.get(ValueLayout.JAVA_BYTE, off + c);
            }
        }
    }

    /** Writes rows of this weight dequantized and rounded to bf16, oneDNN's input. */
    OneDnn.Bf16Rows bf16Rows() {
        MemorySegment w = segment;
        long nb = blocks(cols), wOff = byteOffset, sOff = scaleOffset;
        int cols = this.cols, ld = this.ld;
        return (r0, n, dst) -> {
            for (int i = 0; i < n; i++) {
                dequantizeBf16(w, wOff + (long) (r0 + i) * ld, sOff + 4 * (r0 + i) * nb, cols, dst, 2L * i * cols);
            }
        };
    }

    /**
     * {@link #dequantize}'s values rounded to bf16 (nearest, ties to even: {@link Bf16#fromFloat}'s
     * bits) into a native segment at byte {@code dstOff} (oneDNN's input). A loop over blocks, each
     * block's scale read and broadcast once; while the scale is finite, scale · q is no NaN, so the
     * rounding needs no NaN case (a block with a NaN or infinite scale, and the rest of the row,
     * go through the scalar loop). Every q8_0 prompt chunk converts all the weights it uses this
     * way, each once: in the flat loop with {@link OneDnn#storeBf16} it took about a fifth of a
     * dsmoe-1b q8_0 prefill (BENCHMARKS, session 22).
     */
    private static void dequantizeBf16(MemorySegment w, long off, long soff, int cols, MemorySegment dst, long dstOff) {
        int c0 = 0;
        if (VECTOR) {
            for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
                float s = w.get(SCALE, soff + 4L * b);
                if (!Float.isFinite(s)) break;
                FloatVector sv = FloatVector.broadcast(F, s);
                for (int k = 0; k < BLOCK; k += L) {
                    long c = (long) b * BLOCK + k;
                    IntVector bits = ((FloatVector) ByteVector.fromMemorySegment(B, w, off + c, LE)
                            .convertShape(VectorOperators.B2F, F, 0)).mul(sv).reinterpretAsInts();
                    IntVector rounded = bits.add(bits.lanewise(VectorOperators.LSHR, 16).and(1).add(0x7fff))
                            .lanewise(VectorOperators.LSHR, 16);
                    ((ShortVector) rounded.convertShape(VectorOperators.I2S, HALF_SHORTS, 0)).intoMemorySegment(dst, dstOff + 2 * c, LE);
                }
                c0 = (b + 1) * BLOCK;
            }
        }
        for (int b = c0 / BLOCK; c0 < cols; c0 += BLOCK, b++) {
            float s = w.get(SCALE, soff + 4L * b);
            for (int c = c0, end = Math.min(cols, c0 + BLOCK); c < end; c++) {
                dst.set(BF16_LE, dstOff + 2L * c, Bf16.fromFloat(s * w.get(ValueLayout.JAVA_BYTE, off + c)));
            }
        }
    }

    private static final ValueLayout.OfShort BF16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    /** Shorts of half the float width: one float vector's lanes narrowed to bf16. */
    private static final VectorSpecies<Short> HALF_SHORTS = VECTOR ? VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2)) : null;

    /** The scratch {@link #gemm} dequantizes a {@code [rows, cols]} weight into. */
    static long gemmScratchFloats(long rows, long cols) {
        return OneDnn.get() != null ? 0 : Matmul.scratchFloats(rows, cols); // oneDNN's scratch is native, per thread
    }

    /**
     * Dequantizes {@link Matmul#unpackRows} weight rows at a time into the fp32 scratch (rows in
     * parallel, vectorized: scalar and on one thread it took a third of a 1B q8_0 prefill), one
     * product per block.
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
        long nb = blocks(cols), wOff = byteOffset, sOff = scaleOffset;
        int cols = this.cols, ld = this.ld;
        for (int r0 = 0; r0 < rows; r0 += block) {
            int b = Math.min(block, rows - r0), first = r0;
            Parallel.forRange(b, 16, (i0, i1) -> {
                for (int i = i0; i < i1; i++) {
                    dequantize(w, wOff + (long) (first + i) * ld, sOff + 4 * (first + i) * nb, cols, scratch, i * cols);
                }
            });
            Kernels.gemm().sgemm(false, true, m, b, cols, 1f, x, xOff, ldx, scratch, 0, cols, beta, y, yOff + r0, ldy);
        }
    }

    // The parallel loops over the row kernel, one lambda each (TensorView.matVec says why);
    // TensorView has checked the arguments and worked out the experts' offsets (of the quants:
    // an expert of R rows starts stride = R·cols bytes on, its scales R·⌈cols/32⌉ floats on).

    @Override
    void rowRange(float[] x, int xOff, int m, float[] y, int yOff, int ldy, int r0, int r1) {
        rows(segment, byteOffset, scaleOffset, 4 * blocks(cols), cols, x, xOff, m, y, yOff, ldy, false, r0, r1);
    }

    @Override
    void matVecOneRow(float[] x, int xOff, float[] y, int yOff, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset, sOff = scaleOffset, sRow = 4 * blocks(cols);
        int cols = this.cols;
        Parallel.forChunks(rows, MatVec.chunkRows(rows), (r0, r1) -> rows(w, wOff, sOff, sRow, cols, x, xOff, 1, y, yOff, 0, accumulate, r0, r1));
    }

    @Override
    void matVecRows(float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset, sOff = scaleOffset, sRow = 4 * blocks(cols);
        int cols = this.cols;
        Parallel.forChunks(rows, MatVec.chunkRows(rows),
                (r0, r1) -> rows(w, wOff, sOff, sRow, cols, x, xOff, m, y, yOff, ldy, accumulate, r0, r1));
    }

    @Override
    void segmentRows(float[] x, int xOff, float[] y, int yOff, int ldy, int n, int[] start, int[] count, int[] expert,
                     int rows, long stride, long work, int rowCost, int chunks) {
        MemorySegment w = segment;
        long wOff = byteOffset, sOff = scaleOffset, sRow = 4 * blocks(cols);
        int cols = this.cols;
        Parallel.forChunks(chunks, 1, (c0, c1) -> {
            for (int ch = c0; ch < c1; ch++) {
                long from = segmentPoint(work * ch / chunks, n, count, rows, rowCost);
                long to = segmentPoint(work * (ch + 1) / chunks, n, count, rows, rowCost);
                for (int i = (int) (from >>> 32), last = (int) (to >>> 32); i <= last && i < n; i++) {
                    int ra = i == (int) (from >>> 32) ? (int) from : 0, rb = i == last ? (int) to : rows;
                    if (count[i] > 0 && ra < rb) {
                        long g0 = (long) expert[i] * rows; // the expert's first row in the whole stacked view
                        rows(w, wOff + g0 * cols, sOff + g0 * sRow, sRow, cols, x, xOff + start[i] * cols, count[i], y,
                                yOff + start[i] * ldy, ldy, false, ra, rb);
                    }
                }
            }
        });
    }

    @Override
    void selectedRows(int[] experts, int eOff, int count, int rows, long stride, float[] x, int xOff, float[] y, int yOff) {
        MemorySegment w = segment;
        long wOff = byteOffset, sOff = scaleOffset, sRow = 4 * blocks(cols);
        int cols = this.cols;
        Parallel.forRange(count * rows, MatVec.ROW_GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                int e = experts[eOff + i / rows], r = i % rows;
                long g = (long) e * rows + r; // the row in the whole stacked view
                row(w, wOff + g * cols, sOff + g * sRow, cols, x, xOff, 1, y, yOff + i, 0, false);
            }
        });
    }

    @Override
    void selectedSumRows(int[] experts, int eOff, int count, int rows, long stride, float[] x, int xOff, float[] y,
                         int yOff, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset, sOff = scaleOffset, sRow = 4 * blocks(cols);
        int cols = this.cols;
        Parallel.forRange(rows, MatVec.ROW_GRAIN, (r0, r1) -> {
            for (int i = 0; i < count; i++) {
                long g0 = (long) experts[eOff + i] * rows;
                boolean acc = accumulate || i > 0;
                for (int r = r0; r < r1; r++) {
                    row(w, wOff + (g0 + r) * cols, sOff + (g0 + r) * sRow, cols, x, xOff + i * cols, 1, y, yOff + r, 0, acc);
                }
            }
        });
    }

    @Override
    void pieceTiles(int e, int rows, long stride, int r, int tiles, int nr, int step, float[] x, int xo, float[] acc, int ao) {
        long g = (long) e * rows + r, sRow = 4L * blocks(cols); // the first tile's first row in the whole stacked view
        pieces(segment, byteOffset + g * cols, scaleOffset + g * sRow, sRow, tiles, nr, step, cols, x, xo, acc, ao);
    }

    @Override
    void pieceTile4(int e, int rows, long stride, int r, int nr, int step, float[] x, int x0, int x1, int x2, int x3,
                    float[] acc, int a0, int a1, int a2, int a3) {
        long g = (long) e * rows + r, sRow = 4L * blocks(cols);
        piece4(segment, byteOffset + g * cols, scaleOffset + g * sRow, sRow, nr, step, cols, x, x0, x1, x2, x3, acc, a0, a1, a2, a3);
    }


    // A piece's tiles into its slot's accumulators (tile k's at ao + k·PIECE_FLOATS: loaded, its columns added
    // in order, stored), tile k's rows k + min(j, nr - 1)·step from off (quants) and soff (scales): MatVec.tiles'
    // full tiles of a range in one call (nr 4, step the tile count), or one tile as it comes. Expert rows of
    // 128-256 quants make a tile a few lane blocks, so a call and its offsets per tile cost as much as its arithmetic.
    private static void pieces(MemorySegment w, long off, long soff, long sRow, int tiles, int nr, int step, int cols, float[] x, int xo,
                               float[] acc, int ao) {
        int bound = VECTOR ? cols / BLOCK * BLOCK : 0;
        for (int k = 0; k < tiles; k++) {
            long t = off + (long) k * cols, ts = soff + k * sRow;
            long o0 = t, o1 = tileRow(t, 1, nr, (long) step * cols), o2 = tileRow(t, 2, nr, (long) step * cols), o3 = tileRow(t, 3, nr, (long) step * cols);
            long s0 = ts, s1 = tileRow(ts, 1, nr, step * sRow), s2 = tileRow(ts, 2, nr, step * sRow), s3 = tileRow(ts, 3, nr, step * sRow);
            int a = ao + k * MatVec.PIECE_FLOATS;
            FloatVector a0 = FloatVector.fromArray(F, acc, a), a1 = FloatVector.fromArray(F, acc, a + L),
                    a2 = FloatVector.fromArray(F, acc, a + 2 * L), a3 = FloatVector.fromArray(F, acc, a + 3 * L);
            for (int c = 0; c < bound; c += L) {
                long sb = 4L * (c / BLOCK);
                FloatVector xv = FloatVector.fromArray(F, x, xo + c);
                a0 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o0 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(w.get(SCALE, s0 + sb)), a0);
                a1 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o1 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(w.get(SCALE, s1 + sb)), a1);
                a2 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o2 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(w.get(SCALE, s2 + sb)), a2);
                a3 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o3 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(w.get(SCALE, s3 + sb)), a3);
            }
            a0.intoArray(acc, a);
            a1.intoArray(acc, a + L);
            a2.intoArray(acc, a + 2 * L);
            a3.intoArray(acc, a + 3 * L);
            if (bound < cols) pieceTail(w, t, ts, sRow, nr, step, bound, cols, x, xo, acc, a);
        }
    }

    // Four pieces of one expert (four slots) over the same 4 weight rows: each weight vector loaded once for the four.
    private static void piece4(MemorySegment w, long off, long soff, long sRow, int nr, int step, int cols, float[] x, int x0, int x1, int x2,
                               int x3, float[] acc, int b0, int b1, int b2, int b3) {
        long o0 = off, o1 = tileRow(off, 1, nr, (long) step * cols), o2 = tileRow(off, 2, nr, (long) step * cols), o3 = tileRow(off, 3, nr, (long) step * cols);
        long s0 = soff, s1 = tileRow(soff, 1, nr, step * sRow), s2 = tileRow(soff, 2, nr, step * sRow), s3 = tileRow(soff, 3, nr, step * sRow);
        FloatVector a00 = FloatVector.fromArray(F, acc, b0), a01 = FloatVector.fromArray(F, acc, b0 + L),
                a02 = FloatVector.fromArray(F, acc, b0 + 2 * L), a03 = FloatVector.fromArray(F, acc, b0 + 3 * L),
                a10 = FloatVector.fromArray(F, acc, b1), a11 = FloatVector.fromArray(F, acc, b1 + L),
                a12 = FloatVector.fromArray(F, acc, b1 + 2 * L), a13 = FloatVector.fromArray(F, acc, b1 + 3 * L),
                a20 = FloatVector.fromArray(F, acc, b2), a21 = FloatVector.fromArray(F, acc, b2 + L),
                a22 = FloatVector.fromArray(F, acc, b2 + 2 * L), a23 = FloatVector.fromArray(F, acc, b2 + 3 * L),
                a30 = FloatVector.fromArray(F, acc, b3), a31 = FloatVector.fromArray(F, acc, b3 + L),
                a32 = FloatVector.fromArray(F, acc, b3 + 2 * L), a33 = FloatVector.fromArray(F, acc, b3 + 3 * L);
        int c = 0;
        for (int bound = VECTOR ? cols / BLOCK * BLOCK : 0; c < bound; c += L) {
            long sb = 4L * (c / BLOCK);
            FloatVector w0 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o0 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s0 + sb));
            FloatVector w1 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o1 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s1 + sb));
            FloatVector w2 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o2 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s2 + sb));
            FloatVector w3 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o3 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s3 + sb));
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
            pieceTail(w, off, soff, sRow, nr, step, c, cols, x, x0, acc, b0);
            pieceTail(w, off, soff, sRow, nr, step, c, cols, x, x1, acc, b1);
            pieceTail(w, off, soff, sRow, nr, step, c, cols, x, x2, acc, b2);
            pieceTail(w, off, soff, sRow, nr, step, c, cols, x, x3, acc, b3);
        }
    }

    // The columns past the last lane block of a piece's rows, into the slot's tail sums.
    private static void pieceTail(MemorySegment w, long off, long soff, long sRow, int nr, int step, int c, int cols, float[] x, int xo, float[] acc,
                                  int ao) {
        for (int j = 0; j < nr; j++) {
            long o = off + (long) j * step * cols, so = soff + (long) j * step * sRow;
            float t = acc[ao + 4 * L + j];
            for (int i = c; i < cols; i++) t += w.get(SCALE, so + 4L * (i / BLOCK)) * w.get(ValueLayout.JAVA_BYTE, o + i) * x[xo + i];
            acc[ao + 4 * L + j] = t;
        }
    }

    /**
     * Weight rows {@code [r0, r1)} (row r's quants at byte {@code wOff + r·cols}, its scales at
     * {@code sOff + r·sRow}) against m input rows,
     * in tiles of 4 weight rows: each tile's rows read once from memory for all m inputs (from
     * the cache for every group after the first), 4 inputs at a time ({@link #tile}), the last
     * m mod 4 one at a time ({@link #tile1}). Every output is the single-row kernel's, bit for bit.
     */
    static void rows(MemorySegment w, long wOff, long sOff, long sRow, int cols, float[] x, int xOff, int m, float[] y,
                     int yOff, int ldy, boolean acc, int r0, int r1) {
        if (m >= MatVec.UNPACK_MIN_INPUTS && VECTOR && cols % BLOCK == 0) {
            unpackedRows(w, wOff, sOff, sRow, cols, x, xOff, m, y, yOff, ldy, acc, r0, r1);
            return;
        }
        float[] sums = MatVec.tileSums();
        for (int k = 0, tiles = MatVec.tiles(r0, r1); k < tiles; k++) { // spaced rows: MatVec.tiles says why
            int r = MatVec.tileStart(r0, r1, k), nr = MatVec.tileSize(r0, r1, k), step = MatVec.tileStep(r0, r1, k), i = 0;
            long off = wOff + (long) r * cols, soff = sOff + r * sRow;
            for (; i + 4 <= m; i += 4) {
                tile(w, off, soff, sRow, nr, step, cols, x, xOff + i * cols, y, yOff + i * ldy + r, ldy, acc, sums);
            }
            for (; i < m; i++) tile1(w, off, soff, sRow, nr, step, cols, x, xOff + i * cols, y, yOff + i * ldy + r, acc, sums);
        }
    }

    /**
     * {@link #rows} for many inputs: each tile of 4 weight rows dequantized to fp32 once (scale · q,
     * the value {@link #tile} multiplies), then {@link F32Tensor#rows} over it. With whole blocks
     * only (cols a multiple of 32), the fp32 kernel's vector loop and scalar tail cover the same
     * columns as this format's, so every output has the single-row kernel's bits.
     */
    private static void unpackedRows(MemorySegment w, long wOff, long sOff, long sRow, int cols, float[] x, int xOff,
                                     int m, float[] y, int yOff, int ldy, boolean acc, int r0, int r1) {
        MatVec.Unpacked u = MatVec.unpacked(MatVec.TILE_ROWS * cols);
        float[] a = u.floats;
        for (int r = r0; r < r1; r += MatVec.TILE_ROWS) {
            int nr = Math.min(MatVec.TILE_ROWS, r1 - r);
            for (int j = 0; j < nr; j++) dequantize(w, wOff + (long) (r + j) * cols, sOff + (r + j) * sRow, cols, a, j * cols);
            F32Tensor.rows(u.segment, 0, cols, x, xOff, m, y, yOff + r, ldy, acc, 0, nr);
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

    /** Byte offset of tile row j's quants (stride step·cols) or scales (stride step·sRow): row min(j, nr-1) of the tile at off. */
    private static long tileRow(long off, int j, int nr, long stride) {
        return off + Math.min(j, nr - 1) * stride;
    }

    // 4 weight rows x 4 input rows: 16 accumulators, a{i}{j} for input i and weight row j, each
    // weight vector loaded once for the 4 inputs and each input vector once for the 4 rows.
    private static void tile(MemorySegment w, long off, long soff, long sRow, int nr, int step, int cols, float[] x, int xo,
                             float[] y, int yo, int ldy, boolean acc, float[] sums) {
        long o0 = off, o1 = tileRow(off, 1, nr, (long) step * cols), o2 = tileRow(off, 2, nr, (long) step * cols), o3 = tileRow(off, 3, nr, (long) step * cols);
        long s0 = soff, s1 = tileRow(soff, 1, nr, step * sRow), s2 = tileRow(soff, 2, nr, step * sRow), s3 = tileRow(soff, 3, nr, step * sRow);
        int x1 = xo + cols, x2 = x1 + cols, x3 = x2 + cols;
        FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,
                a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        int c = 0;
        for (int bound = VECTOR ? cols / BLOCK * BLOCK : 0; c < bound; c += L) {
            long sb = 4L * (c / BLOCK);
            FloatVector w0 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o0 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s0 + sb));
            FloatVector w1 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o1 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s1 + sb));
            FloatVector w2 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o2 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s2 + sb));
            FloatVector w3 = ((FloatVector) ByteVector.fromMemorySegment(B, w, o3 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                    .mul(w.get(SCALE, s3 + sb));
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
            if (c < cols) finish(w, off + (long) j * step * cols, soff + j * step * sRow, c, cols, x, xo, 4, y, yo + j * step, ldy, acc, t0, t1, t2, t3);
            else MatVec.store(y, yo + j * step, ldy, 4, acc, t0, t1, t2, t3);
        }
    }

    // 4 weight rows x 1 input row: 4 accumulators, their lane sums taken here.
    private static void tile1(MemorySegment w, long off, long soff, long sRow, int nr, int step, int cols, float[] x, int xo,
                              float[] y, int yo, boolean acc, float[] sums) {
        long o0 = off, o1 = tileRow(off, 1, nr, (long) step * cols), o2 = tileRow(off, 2, nr, (long) step * cols), o3 = tileRow(off, 3, nr, (long) step * cols);
        long s0 = soff, s1 = tileRow(soff, 1, nr, step * sRow), s2 = tileRow(soff, 2, nr, step * sRow), s3 = tileRow(soff, 3, nr, step * sRow);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        // A loop over blocks, each block's scales broadcast once, and in it a loop over pairs of
        // lane blocks (one pass at 16 lanes, two at 8): the same operations in the same order as
        // one flat loop over lane blocks reading the scale at c / 32, whose index C2 cannot prove
        // in bounds (a check and its arithmetic for every lane block), at 1.6x (AVX-512) and 1.9x
        // (256 bits) its rate from L2 (BENCHMARKS, session 19). A loop of single lane blocks in
        // each block ran at half the flat loop's rate at 256 bits; the piece kernels, over expert
        // rows of 128-256 columns, and the 4 x 4 tile ran slower in this shape and keep the flat loop.
        // Written out, no helper methods: a helper C2 does not inline returns a boxed vector (a
        // decode step then allocated 5 MB a token in DecodeStepAllocationTest within the suite).
        int nb = VECTOR ? cols / BLOCK : 0;
        for (int b = 0; b < nb; b++) {
            long sb = 4L * b;
            FloatVector c0 = FloatVector.broadcast(F, w.get(SCALE, s0 + sb)), c1 = FloatVector.broadcast(F, w.get(SCALE, s1 + sb)),
                    c2 = FloatVector.broadcast(F, w.get(SCALE, s2 + sb)), c3 = FloatVector.broadcast(F, w.get(SCALE, s3 + sb));
            for (int k = 0; k < BLOCK; k += 2 * L) {
                int c = b * BLOCK + k;
                FloatVector xv = FloatVector.fromArray(F, x, xo + c);
                a0 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o0 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c0), a0);
                a1 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o1 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c1), a1);
                a2 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o2 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c2), a2);
                a3 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o3 + c, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c3), a3);
                xv = FloatVector.fromArray(F, x, xo + c + L);
                a0 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o0 + c + L, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c0), a0);
                a1 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o1 + c + L, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c1), a1);
                a2 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o2 + c + L, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c2), a2);
                a3 = xv.fma(((FloatVector) ByteVector.fromMemorySegment(B, w, o3 + c + L, LE).convertShape(VectorOperators.B2F, F, 0))
                        .mul(c3), a3);
            }
        }
        int c = nb * BLOCK;
        // lane sums through the thread's scratch, as in tile: with the widening, four addLanes calls
        // here made the method too large for C2 to inline them, and their vectors were boxed
        a0.intoArray(sums, 0);
        a1.intoArray(sums, L);
        a2.intoArray(sums, 2 * L);
        a3.intoArray(sums, 3 * L);
        MatVec.tileLaneSums4(sums);
        finish1(w, off, soff, sRow, c, cols, x, xo, y, yo, acc, nr, step, MatVec.tileSum4(sums, 0), MatVec.tileSum4(sums, 1),
                MatVec.tileSum4(sums, 2), MatVec.tileSum4(sums, 3));
    }

    // tile1's end: each of its nr rows' scalar tail and store, as the single-row kernel's.
    private static void finish1(MemorySegment w, long off, long soff, long sRow, int c, int cols, float[] x, int xo,
                                float[] y, int yo, boolean acc, int nr, int step, float t0, float t1, float t2, float t3) {
        for (int j = 0; j < nr; j++) {
            float t = j == 0 ? t0 : j == 1 ? t1 : j == 2 ? t2 : t3;
            finish(w, off + (long) j * step * cols, soff + (long) j * step * sRow, c, cols, x, xo, 1, y, yo + j * step, 0, acc, t, 0f, 0f, 0f);
        }
    }

    // One weight row (quants from off, scales from soff) against up to four input rows: each lane
    // block of quants is widened and scaled once for all of them.
    private static void row(MemorySegment w, long off, long soff, int cols, float[] x, int xo, int mb,
                            float[] y, int yo, int ldy, boolean acc) {
        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
        int c = 0;
        if (VECTOR) {
            // one flat loop over lane blocks (as Bf16Tensor's), the block's scale read for each:
            // C2 unrolls and schedules it better than a loop over blocks with an inner one
            for (int bound = cols / BLOCK * BLOCK; c < bound; c += L) {
                FloatVector wv = ((FloatVector) ByteVector.fromMemorySegment(B, w, off + c, LE)
                        .convertShape(VectorOperators.B2F, F, 0)).mul(w.get(SCALE, soff + 4L * (c / BLOCK)));
                s0 = FloatVector.fromArray(F, x, xo + c).fma(wv, s0);
                if (mb > 1) s1 = FloatVector.fromArray(F, x, xo + cols + c).fma(wv, s1);
                if (mb > 2) s2 = FloatVector.fromArray(F, x, xo + 2 * cols + c).fma(wv, s2);
                if (mb > 3) s3 = FloatVector.fromArray(F, x, xo + 3 * cols + c).fma(wv, s3);
            }
        }
        // lane sums here, not in finish: a vector passed to a call C2 does not inline is boxed
        float t0 = Simd.addLanes(s0), t1 = mb > 1 ? Simd.addLanes(s1) : 0f, t2 = mb > 2 ? Simd.addLanes(s2) : 0f,
                t3 = mb > 3 ? Simd.addLanes(s3) : 0f;
        finish(w, off, soff, c, cols, x, xo, mb, y, yo, ldy, acc, t0, t1, t2, t3);
    }

    // The end of a row: the scalar tail from column c on (the short last block, or all of it
    // without the vector loop) added to the lane sums t0..t(mb-1), and the store.
    private static void finish(MemorySegment w, long off, long soff, int c, int cols, float[] x, int xo,
                               int mb, float[] y, int yo, int ldy, boolean acc,
                               float t0, float t1, float t2, float t3) {
        for (; c < cols; c++) {
            float wv = w.get(SCALE, soff + 4L * (c / BLOCK)) * w.get(ValueLayout.JAVA_BYTE, off + c);
            t0 += wv * x[xo + c];
            if (mb > 1) t1 += wv * x[xo + cols + c];
            if (mb > 2) t2 += wv * x[xo + 2 * cols + c];
            if (mb > 3) t3 += wv * x[xo + 3 * cols + c];
        }
        MatVec.store(y, yo, ldy, mb, acc, t0, t1, t2, t3);
    }
}
