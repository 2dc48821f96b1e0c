package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Memory-bound products for decode: {@code y[m, rows] = x[m, cols] · Wᵀ} with a weight matrix
 * W {@code [rows, cols]} (a PyTorch {@code Linear} weight, {@code [out, in]}) and a small number
 * of input rows m (1 for single-stream decode, a few for small batches).
 *
 * <p>Each weight row is read once and dotted against all m inputs, so the cost is one pass over
 * the weights whatever m is: the speed limit is memory bandwidth. The row kernels belong to the
 * weight formats ({@link F32Tensor}, {@link Bf16Tensor}, {@link Q8Tensor}: load a lane block, widen, fused
 * multiply-add, one lane sum per row); the model code and the benchmarks reach them through
 * {@link Matmul}, over views made once. This class names the formats ({@link DType}). Rows are
 * split across {@link Parallel}'s threads, so the segment must be readable from any thread (a
 * shared, global or automatic arena; not a confined one).
 */
public final class MatVec {

    /** Rows handed to one thread at least, so tiny matrices stay on one core. */
    static final int ROW_GRAIN = 64;

    /**
     * Rows of a chunk of a mat-vec over {@code rows} weight rows ({@link Parallel#forChunks}):
     * about four chunks a thread, a multiple of the row tile, at least {@link #ROW_GRAIN}.
     */
    static int chunkRows(int rows) {
        int c = rows / (4 * Parallel.threads());
        return Math.max(ROW_GRAIN, (c + TILE_ROWS - 1) / TILE_ROWS * TILE_ROWS);
    }

    private MatVec() {}

    /** The weight formats a model can be loaded in, each a {@link TensorView} subclass. */
    public enum DType {
        F32(4, 0, F32Tensor::over, null, perElement(4, F32Tensor::store), F32Tensor::gemmScratchFloats),
        BF16(2, 0, Bf16Tensor::over, null, perElement(2, Bf16Tensor::store), Bf16Tensor::gemmScratchFloats),
        /** llama.cpp's Q8_0 (int8, one scale per 32 weights of a row; {@link Q8Tensor}). */
        Q8_0(1, Q8Tensor.BLOCK, Q8Tensor::over, Q8Tensor::over, new Writer() {
            @Override
            public long bytes(long rows, long cols) {
                return Q8Tensor.bytes(rows, cols);
            }

            @Override
            public long scaleOffset(long rows, long cols) {
                return Q8Tensor.scaleOffset(rows, cols);
            }

            @Override
            public void write(MemorySegment dst, int rows, int cols, Element src) {
                Q8Tensor.write(dst, rows, cols, src);
            }
        }, Q8Tensor::gemmScratchFloats);

        /** Bytes per weight, scales included (ignoring a row's short last block and padding). */
        public final double bytesPerWeight;
        /** Bytes of one element: a weight, or for a type with scales one quant (the scales come on top). */
        public final int elementBytes;
        /** Weights a row shares one fp32 scale among (a block): 32 for Q8_0, 0 for a type without scales. */
        public final int scaleBlock;
        private final View view;
        private final ScaledView scaledView;
        private final Writer writer;
        private final Scratch scratch;

        DType(int elementBytes, int scaleBlock, View view, ScaledView scaledView, Writer writer, Scratch scratch) {
            this.elementBytes = elementBytes;
            this.scaleBlock = scaleBlock;
            this.bytesPerWeight = elementBytes + (scaleBlock == 0 ? 0 : 4.0 / scaleBlock);
            this.view = view;
            this.scaledView = scaledView;
            this.writer = writer;
            this.scratch = scratch;
        }

        /** The type a name gives, any case: {@code f32}/{@code fp32}/{@code float32}, {@code bf16}/{@code bfloat16} or {@code q8_0}. */
        public static DType parse(String s) {
            return switch (s.trim().toLowerCase(java.util.Locale.ROOT)) {
                case "f32", "fp32", "float32" -> F32;
                case "bf16", "bfloat16" -> BF16;
                case "q8_0" -> Q8_0;
                default -> throw new IllegalArgumentException("unknown weight type '" + s + "': use f32, bf16 or q8_0");
            };
        }

        /** The {@code [rows, cols]} matrix of this type at byte {@code byteOffset} of {@code segment}. */
        public TensorView view(MemorySegment segment, long byteOffset, int rows, int cols) {
            return view.over(segment, byteOffset, rows, cols);
        }

        /**
         * The {@code [rows, cols]} matrix of this type whose elements start at byte {@code byteOffset}
         * of {@code segment} and whose fp32 scales ({@link #scalesPerRow} a row, row after row) at byte
         * {@code scaleOffset} of the same segment, wherever that lies (a quantized checkpoint's two
         * tensors in one mapped file). Only for a type with scales.
         */
        public TensorView view(MemorySegment segment, long byteOffset, long scaleOffset, int rows, int cols) {
            if (scaledView == null) throw new UnsupportedOperationException(this + " has no scales");
            return scaledView.over(segment, byteOffset, scaleOffset, rows, cols);
        }

        /** Scales in a row of {@code cols} weights: {@code ⌈cols/}{@link #scaleBlock}{@code ⌉}, 0 for a type without. */
        public long scalesPerRow(long cols) {
            return scaleBlock == 0 ? 0 : (cols + scaleBlock - 1) / scaleBlock;
        }

        /**
         * Where {@link #write} puts a {@code [rows, cols]} matrix's scales: bytes from its start (the
         * elements take {@code rows·cols·}{@link #elementBytes} from byte 0); {@link #bytes} for a
         * type without scales.
         */
        public long scaleOffset(long rows, long cols) {
            return writer.scaleOffset(rows, cols);
        }

        /** Bytes a {@code [rows, cols]} matrix of this type takes ({@link #write} writes them). */
        public long bytes(long rows, long cols) {
            return writer.bytes(rows, cols);
        }

        /**
         * Writes the {@code [rows, cols]} matrix whose element {@code i} (row-major) {@code src}
         * gives into {@code dst} (from byte 0, {@link #bytes} of them) in this type: converted,
         * rounded or quantized, in parallel.
         */
        public void write(MemorySegment dst, int rows, int cols, Element src) {
            writer.write(dst, rows, cols, src);
        }

        /** A new segment of {@code arena} holding {@code w} ({@code [rows, cols]}, row-major) in this type. */
        public MemorySegment write(java.lang.foreign.Arena arena, float[] w, int rows, int cols) {
            MemorySegment dst = arena.allocate(bytes(rows, cols), 64);
            write(dst, rows, cols, i -> w[Math.toIntExact(i)]);
            return dst;
        }

        /**
         * The most floats of {@link Matmul}'s scratch a product with a {@code [rows, cols]} weight
         * of this type grows it to: 0 for a type GEMM reads in place.
         */
        public long gemmScratchFloats(long rows, long cols) {
            return scratch.floats(rows, cols);
        }

        /** Element {@code i} of a matrix being written, as fp32. */
        @FunctionalInterface
        public interface Element {
            float at(long i);
        }

        private interface View {
            TensorView over(MemorySegment segment, long byteOffset, int rows, int cols);
        }

        private interface ScaledView {
            TensorView over(MemorySegment segment, long byteOffset, long scaleOffset, int rows, int cols);
        }

        private interface Writer {
            long bytes(long rows, long cols);

            /** Where the scales start in what {@link #write} writes; {@link #bytes} for a type without. */
            default long scaleOffset(long rows, long cols) {
                return bytes(rows, cols);
            }

            void write(MemorySegment dst, int rows, int cols, Element src);
        }

        private interface Store {
            void store(MemorySegment segment, long i, float v);
        }

        private interface Scratch {
            long floats(long rows, long cols);
        }

        /** A format of {@code bytes} per element written element by element, in parallel chunks. */
        private static Writer perElement(int bytes, Store store) {
            return new Writer() {
                @Override
                public long bytes(long rows, long cols) {
                    return rows * cols * bytes;
                }

                @Override
                public void write(MemorySegment dst, int rows, int cols, Element src) {
                    long n = (long) rows * cols;
                    int chunk = 1 << 16;
                    int chunks = Math.toIntExact((n + chunk - 1) / chunk);
                    Parallel.forRange(chunks, 1, (c0, c1) -> {
                        for (long i = (long) c0 * chunk; i < Math.min(n, (long) c1 * chunk); i++) store.store(dst, i, src.at(i));
                    });
                }
            };
        }
    }

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    /** Weight rows of a row tile (each format's {@code rows}: 4 weight rows by 4 or by 1 input rows). */
    static final int TILE_ROWS = 4;
    /** Accumulators of a 4 by 4 row tile, each one vector of lane sums. */
    static final int TILE_ACCUMULATORS = 16;

    /*
     * Which weight rows share a tile. A range [r0, r1) of n rows goes in q = n/4 tiles of 4 rows a
     * quarter of the range apart (tile k: rows r0 + k, + q, + 2q, + 3q), then one tile of the last
     * n mod 4 adjacent rows: a thread reads its weight as four long sequential streams, which the
     * hardware prefetchers follow; tiles of 4 adjacent rows started four short streams per tile
     * (on rows of 2048 int8 weights, 1.2 to 1.7 times slower). Which rows share a tile changes no
     * output's bits. Every format's rows loop walks the tiles k < tiles(r0, r1) with these.
     */

    /** Tiles of the rows [r0, r1). */
    static int tiles(int r0, int r1) {
        int n = r1 - r0;
        return n / TILE_ROWS + (n % TILE_ROWS == 0 ? 0 : 1);
    }

    /** Tile k's first row. */
    static int tileStart(int r0, int r1, int k) {
        int q = (r1 - r0) / TILE_ROWS;
        return k < q ? r0 + k : r0 + q * TILE_ROWS;
    }

    /** Tile k's rows: 4, or fewer for the last tile. */
    static int tileSize(int r0, int r1, int k) {
        int q = (r1 - r0) / TILE_ROWS;
        return k < q ? TILE_ROWS : r1 - r0 - q * TILE_ROWS;
    }

    /** Rows from one of tile k's rows to the next. */
    static int tileStep(int r0, int r1, int k) {
        int q = (r1 - r0) / TILE_ROWS;
        return k < q ? q : 1;
    }

    /**
     * Input rows from which an int8 or bf16 row kernel widens each tile of {@link #TILE_ROWS} weight
     * rows to fp32 once, into the thread's {@link #unpacked} scratch, and runs the fp32 tiles over
     * it: below, the widening per group of 4 inputs is cheaper than the extra pass; at 64 decode
     * rows it was 16 widenings of every weight. The widened values are the ones the format's own
     * kernel multiplies, so every output keeps its bits.
     */
    static final int UNPACK_MIN_INPUTS = 8;

    /** Each thread's fp32 scratch for one unpacked tile of weight rows, with its segment view. */
    private static final ThreadLocal<Unpacked> UNPACKED = ThreadLocal.withInitial(Unpacked::new);

    /** A float array and the heap segment over it, grown together, reused by one thread. */
    static final class Unpacked {
        float[] floats = new float[0];
        MemorySegment segment = MemorySegment.ofArray(floats);

        Unpacked fit(int n) {
            if (floats.length < n) {
                floats = new float[n];
                segment = MemorySegment.ofArray(floats);
            }
            return this;
        }
    }

    /** The calling thread's unpacking scratch, at least {@code n} floats. */
    static Unpacked unpacked(int n) {
        return UNPACKED.get().fit(n);
    }

    /** Each thread's scratch for a tile's accumulators (made on the thread's first tile, then reused). */
    private static final ThreadLocal<float[]> TILE_SUMS = ThreadLocal.withInitial(() -> new float[TILE_ACCUMULATORS * L]);

    /** The calling thread's tile scratch: {@link #TILE_ACCUMULATORS} vectors, accumulator k at {@code k·L}. */
    static float[] tileSums() {
        return TILE_SUMS.get();
    }

    /*
     * A tile's 16 lane sums at once, each in exactly Simd.addLanes's order (lane i plus lane i+L/2,
     * then i+L/4, ...): the reduction trees of pairs of accumulators are interleaved in one vector
     * (blend the halves, swap them, add), so a tree level costs one shuffle per pair of vectors
     * rather than one per vector, and the last level leaves all 16 sums in 16/L vectors. Each lane
     * adds the same two partial sums as addLanes does (some in the other operand order, which IEEE
     * addition does not see), so every sum has addLanes's bits.
     */
    private static final boolean TRANSPOSED = L == 4 || L == 8 || L == 16;
    private static final VectorShuffle<Float> XOR_8 = xor(8), XOR_4 = xor(4), XOR_2 = xor(2), XOR_1 = xor(1);
    private static final VectorMask<Float> BIT_8 = bit(8), BIT_4 = bit(4), BIT_2 = bit(2), BIT_1 = bit(1);
    /** Where {@link #tileLaneSums} leaves accumulator k's sum: {@code sums[SUM_AT[k]]}. */
    private static final int[] SUM_AT = sumPositions();

    private static VectorShuffle<Float> xor(int w) {
        return VectorShuffle.fromOp(F, i -> w < L ? i ^ w : i);
    }

    private static VectorMask<Float> bit(int w) {
        boolean[] b = new boolean[L];
        for (int i = 0; i < L; i++) b[i] = (i & w) != 0;
        return VectorMask.fromArray(F, b, 0);
    }

    private static int[] sumPositions() {
        float[] s = new float[TILE_ACCUMULATORS * L];
        for (int k = 0; k < TILE_ACCUMULATORS; k++) java.util.Arrays.fill(s, k * L, (k + 1) * L, k + 1);
        tileLaneSums(s);
        int[] at = new int[TILE_ACCUMULATORS];
        for (int q = 0; q < TILE_ACCUMULATORS; q++) at[Math.round(s[q] / L) - 1] = q;
        return at;
    }

    /**
     * Replaces the tile scratch's accumulators by their lane sums, accumulator k's at
     * {@link #tileSum}{@code (sums, k)}, each with {@link Simd#addLanes}'s bits. Takes no vector,
     * so it is free to stay a call.
     */
    static void tileLaneSums(float[] s) {
        if (!TRANSPOSED) {
            for (int k = 0; k < TILE_ACCUMULATORS; k++) s[k] = Simd.addLanes(FloatVector.fromArray(F, s, k * L));
            return;
        }
        int n = TILE_ACCUMULATORS;
        if (L == 16) {
            for (int p = 0; p < n / 2; p++) {
                FloatVector a = FloatVector.fromArray(F, s, 2 * p * L), b = FloatVector.fromArray(F, s, (2 * p + 1) * L);
                a.blend(b, BIT_8).add(b.blend(a, BIT_8).rearrange(XOR_8)).intoArray(s, p * L);
            }
            n /= 2;
        }
        if (L >= 8) {
            for (int p = 0; p < n / 2; p++) {
                FloatVector a = FloatVector.fromArray(F, s, 2 * p * L), b = FloatVector.fromArray(F, s, (2 * p + 1) * L);
                a.blend(b, BIT_4).add(b.blend(a, BIT_4).rearrange(XOR_4)).intoArray(s, p * L);
            }
            n /= 2;
        }
        for (int p = 0; p < n / 2; p++) {
            FloatVector a = FloatVector.fromArray(F, s, 2 * p * L), b = FloatVector.fromArray(F, s, (2 * p + 1) * L);
            a.blend(b, BIT_2).add(b.blend(a, BIT_2).rearrange(XOR_2)).intoArray(s, p * L);
        }
        n /= 2;
        for (int p = 0; p < n / 2; p++) {
            FloatVector a = FloatVector.fromArray(F, s, 2 * p * L), b = FloatVector.fromArray(F, s, (2 * p + 1) * L);
            a.blend(b, BIT_1).add(b.blend(a, BIT_1).rearrange(XOR_1)).intoArray(s, p * L);
        }
    }

    /** Accumulator k's lane sum after {@link #tileLaneSums}. */
    static float tileSum(float[] sums, int k) {
        return sums[SUM_AT[k]];
    }

    /** Where {@link #tileLaneSums4} leaves accumulator k's sum ({@code k < 4}). */
    private static final int[] SUM4_AT = sum4Positions();

    private static int[] sum4Positions() {
        float[] s = new float[TILE_ACCUMULATORS * L];
        for (int k = 0; k < 4; k++) java.util.Arrays.fill(s, k * L, (k + 1) * L, k + 1);
        tileLaneSums4(s);
        int[] at = new int[4];
        for (int k = 0; k < 4; k++) {
            int q = 0;
            while (s[q] != (k + 1) * L) q++;
            at[k] = q;
        }
        return at;
    }

    /**
     * {@link #tileLaneSums} for a tile of one input row: only accumulators 0 to 3, each with
     * {@link Simd#addLanes}'s bits (accumulator k's sum at {@link #tileSum4}{@code (sums, k)}).
     * The interleaved levels run while there are pairs of vectors; the last levels add each lane
     * to its partner in the one vector left. On short weight rows (an expert's 128 or 256
     * columns) the 16-accumulator reduction cost about as much as the dot products themselves.
     */
    static void tileLaneSums4(float[] s) {
        if (!TRANSPOSED) {
            for (int k = 0; k < 4; k++) s[k] = Simd.addLanes(FloatVector.fromArray(F, s, k * L));
            return;
        }
        if (L == 4) { // 4 accumulators fill one vector: two pair levels, as tileLaneSums
            for (int p = 0; p < 2; p++) {
                FloatVector a = FloatVector.fromArray(F, s, 2 * p * L), b = FloatVector.fromArray(F, s, (2 * p + 1) * L);
                a.blend(b, BIT_2).add(b.blend(a, BIT_2).rearrange(XOR_2)).intoArray(s, p * L);
            }
            FloatVector a = FloatVector.fromArray(F, s, 0), b = FloatVector.fromArray(F, s, L);
            a.blend(b, BIT_1).add(b.blend(a, BIT_1).rearrange(XOR_1)).intoArray(s, 0);
            return;
        }
        // L = 8 or 16: two pair levels (lane distance L/2, then L/4) leave one vector
        VectorShuffle<Float> x1 = L == 16 ? XOR_8 : XOR_4, x2 = L == 16 ? XOR_4 : XOR_2;
        VectorMask<Float> b1 = L == 16 ? BIT_8 : BIT_4, b2 = L == 16 ? BIT_4 : BIT_2;
        FloatVector a0 = FloatVector.fromArray(F, s, 0), a1 = FloatVector.fromArray(F, s, L),
                a2 = FloatVector.fromArray(F, s, 2 * L), a3 = FloatVector.fromArray(F, s, 3 * L);
        FloatVector c0 = a0.blend(a1, b1).add(a1.blend(a0, b1).rearrange(x1));
        FloatVector c1 = a2.blend(a3, b1).add(a3.blend(a2, b1).rearrange(x1));
        FloatVector v = c0.blend(c1, b2).add(c1.blend(c0, b2).rearrange(x2));
        if (L == 16) v = v.add(v.rearrange(XOR_2));
        v.add(v.rearrange(XOR_1)).intoArray(s, 0);
    }

    /** Accumulator k's lane sum after {@link #tileLaneSums4}. */
    static float tileSum4(float[] sums, int k) {
        return sums[SUM4_AT[k]];
    }

    /*
     * Piece sums (TensorView.matVecPieceSums): each slot's accumulators for each tile of 4 weight
     * rows of the block being summed live in the thread's scratch between pieces: 4 lane vectors,
     * then 4 scalars for the column tails, PIECE_FLOATS floats a tile.
     */

    /**
     * Output rows a thread sums all pieces over before its next rows, in spaced tiles
     * ({@link #tiles}) over the block. Each piece then reads its expert's rows of the block as
     * four sequential streams of 64 rows, one expert after the other; tiles of adjacent rows
     * across the whole range (one stream per expert, all experts at once) read at half the speed,
     * and blocks of 64 rows were slower on dsmoe-1b's shapes (bench/PieceSumsProbe.java, session 8).
     * The accumulators take {@code slots · 2 · PIECE_BLOCK/4 · PIECE_FLOATS} floats of scratch (two halves a slot).
     */
    static final int PIECE_BLOCK = 256;

    /**
     * {@link #PIECE_BLOCK} for a call of at most {@link #PIECE_HALVES_SLOTS} slots (decode of one or
     * two sequences, whose accumulators take a few tens of KiB at this size): each piece's streams
     * twice as long. dsmoe-1b's q8_0 MLP output products (9 pieces of [2048 x 256]) took 1.11-1.23x
     * its MLP input products' time with blocks of 512 rows against 1.24-1.34x with 256 (bench infer
     * --profile, four pairs of alternating processes; BENCHMARKS.md, session 21). The same bits:
     * each accumulator gets its pieces in the same order whatever the block.
     */
    static final int PIECE_BLOCK_FEW = 512;

    /** The block of output rows a call of {@code slots} slots sums its pieces over ({@link #PIECE_BLOCK}, {@link #PIECE_BLOCK_FEW}). */
    static int pieceBlock(int slots) {
        return slots <= PIECE_HALVES_SLOTS ? PIECE_BLOCK_FEW : PIECE_BLOCK;
    }

    /**
     * The rows a thread takes at a time in a blocks pass over {@code rows} output rows: a block, or
     * less where that leaves fewer than two chunks a thread (small matrices), a multiple of the tile.
     */
    static int pieceChunk(int rows, int slots) {
        int block = pieceBlock(slots);
        if (block == PIECE_BLOCK) return Math.min(block, chunkRows(rows));
        int half = rows / (2 * Parallel.threads()) / TILE_ROWS * TILE_ROWS;
        return Math.min(block, Math.max(chunkRows(rows), half));
    }

    /** Floats of one slot's piece accumulators: 4 lane vectors and a vector's room for 4 tail sums. */
    static final int PIECE_FLOATS = 5 * L;

    private static final ThreadLocal<Grown> PIECES = ThreadLocal.withInitial(Grown::new);

    /** The calling thread's accumulators for {@code tiles} tiles (tile i from {@code i·PIECE_FLOATS}), zeroed by {@link #clearPieces}. */
    static float[] pieceAccumulators(int tiles) {
        return PIECES.get().atLeast(tiles * PIECE_FLOATS);
    }

    /** A float array one thread grows when a call needs more and reuses (a kernel's per-thread scratch of no fixed size). */
    static final class Grown {
        private float[] floats = new float[0];

        float[] atLeast(int n) {
            if (floats.length < n) floats = new float[n];
            return floats;
        }
    }

    /** Zeroes the first {@code tiles} tiles' accumulators (a new block). */
    static void clearPieces(float[] acc, int tiles) {
        java.util.Arrays.fill(acc, 0, tiles * PIECE_FLOATS, 0f);
    }

    /**
     * A tile's end: each slot's two halves' 4 lane accumulators for it (slot s's first half at
     * {@code first + s·slotStride}, its second {@code halfStride} further) added, summed
     * ({@link #tileLaneSums4}: addLanes's bits), the two halves' tail sums added, and the total
     * added to the slot's output row: {@code y[yOff + outRow[s]·ldy + r + j·step] += sum} for the tile's {@code nr} rows.
     */
    static void addPieceSums(float[] acc, int first, int slotStride, int halfStride, int slots, float[] y, int yOff, int ldy,
                             int[] outRow, int r, int nr, int step) {
        float[] sums = tileSums();
        for (int s = 0; s < slots; s++) {
            int a = first + s * slotStride, b = a + halfStride;
            for (int i = 0; i < 4 * L; i += L) {
                FloatVector.fromArray(F, acc, a + i).add(FloatVector.fromArray(F, acc, b + i)).intoArray(sums, i);
            }
            tileLaneSums4(sums);
            int yo = yOff + outRow[s] * ldy + r;
            for (int j = 0; j < nr; j++) y[yo + j * step] += tileSum4(sums, j) + (acc[a + 4 * L + j] + acc[b + 4 * L + j]);
        }
    }

    /** Slots up to which {@code TensorView.pieceSumRows} splits the work by (half, range of rows) rather than by blocks of rows. */
    static final int PIECE_HALVES_SLOTS = 2;

    /** Tiles times slots from which the halves of {@code TensorView.pieceSumRows} are added in a parallel region. */
    static final int PARALLEL_COMBINE_TILES = 256;

    private static final ThreadLocal<Grown> SHARED_PIECES = ThreadLocal.withInitial(Grown::new);

    /** The calling thread's accumulators for {@code tiles} tiles that a parallel region's tasks fill (not zeroed). */
    static float[] sharedPieceAccumulators(int tiles) {
        return SHARED_PIECES.get().atLeast(tiles * PIECE_FLOATS);
    }

    private static final ThreadLocal<int[][]> HALVES = ThreadLocal.withInitial(() -> new int[][] {new int[0], new int[0]});

    /**
     * Which half of its slot's pieces each piece is in (the calling thread's array, valid until its
     * next call): 0 for a slot's first ⌈k/2⌉ pieces in list order, 1 for the rest.
     */
    static int[] pieceHalves(int[] slot, int n, int slots) {
        int[][] h = HALVES.get();
        if (h[0].length < n) h[0] = new int[n];
        if (h[1].length < 2 * slots) h[1] = new int[2 * slots];
        int[] half = h[0], count = h[1];
        java.util.Arrays.fill(count, 0, 2 * slots, 0);
        for (int p = 0; p < n; p++) count[slot[p]]++;
        for (int p = 0; p < n; p++) {
            int s = slot[p];
            half[p] = count[slots + s] < (count[s] + 1) / 2 ? 0 : 1;
            count[slots + s]++;
        }
        return half;
    }

    /** Range j's first row of {@code rows} split into {@code ranges} (j = ranges: rows), a multiple of the tile below the end. */
    static int rangeStart(int rows, int ranges, int j) {
        return j >= ranges ? rows : (int) ((long) rows * j / ranges) / TILE_ROWS * TILE_ROWS;
    }

    /**
     * Pieces {@code [p, q)} of one expert that share a 4-slot tile kernel: up to 4 from p, all
     * of the same expert (a slot takes an expert once, so they are 4 different slots).
     */
    static int pieceGroupEnd(int[] expert, int p, int n) {
        int e = expert[p], q = p + 1;
        while (q < n && q - p < 4 && expert[q] == e) q++;
        return q;
    }

    // The store at the end of every format's row kernel: one weight row's sums for up to four input rows.
    static void store(float[] y, int yo, int ldy, int mb, boolean acc,
                      float t0, float t1, float t2, float t3) {
        if (acc) {
            y[yo] += t0;
            if (mb > 1) y[yo + ldy] += t1;
            if (mb > 2) y[yo + 2 * ldy] += t2;
            if (mb > 3) y[yo + 3 * ldy] += t3;
        } else {
            y[yo] = t0;
            if (mb > 1) y[yo + ldy] = t1;
            if (mb > 2) y[yo + 2 * ldy] = t2;
            if (mb > 3) y[yo + 3 * ldy] = t3;
        }
    }
}
