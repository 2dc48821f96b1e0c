package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;

/**
 * Memory-bound products for decode: {@code y[m, rows] = x[m, cols] · Wᵀ} with a weight matrix
 * W {@code [rows, cols]} (a PyTorch {@code Linear} weight, {@code [out, in]}) and a small number
 * of input rows m (1 for single-stream decode, a few for small batches).
 *
 * <p>Each weight row is read once and dotted against all m inputs, so the cost is one pass over
 * the weights whatever m is: the speed limit is memory bandwidth. The row kernels belong to the
 * weight formats ({@link F32Tensor}, {@link Bf16Tensor}: load a lane block, widen, fused
 * multiply-add, one lane sum per row); the model code and the benchmarks reach them through
 * {@link Matmul}, over views made once. This class names the formats ({@link DType}). Rows are
 * split across {@link Parallel}'s threads, so the segment must be readable from any thread (a
 * shared, global or automatic arena; not a confined one).
 */
public final class MatVec {

    /** Rows handed to one thread at least, so tiny matrices stay on one core. */
    static final int ROW_GRAIN = 64;

    private MatVec() {}

    /** The weight formats a model can be loaded in, each a {@link TensorView} subclass. */
    public enum DType {
        F32(4, F32Tensor::over, F32Tensor::store, F32Tensor::gemmScratchFloats),
        BF16(2, Bf16Tensor::over, Bf16Tensor::store, Bf16Tensor::gemmScratchFloats);

        public final int bytes;
        private final View view;
        private final Store store;
        private final Scratch scratch;

        DType(int bytes, View view, Store store, Scratch scratch) {
            this.bytes = bytes;
            this.view = view;
            this.store = store;
            this.scratch = scratch;
        }

        /** The type a name gives, any case: {@code f32}/{@code fp32}/{@code float32} or {@code bf16}/{@code bfloat16}. */
        public static DType parse(String s) {
            return switch (s.trim().toLowerCase(java.util.Locale.ROOT)) {
                case "f32", "fp32", "float32" -> F32;
                case "bf16", "bfloat16" -> BF16;
                default -> throw new IllegalArgumentException("unknown weight type '" + s + "': use f32 or bf16");
            };
        }

        /** The {@code [rows, cols]} matrix of this type at byte {@code byteOffset} of {@code segment}. */
        public TensorView view(MemorySegment segment, long byteOffset, int rows, int cols) {
            return view.over(segment, byteOffset, rows, cols);
        }

        /** Writes {@code v} as element {@code i} of a segment of this type. */
        public void store(MemorySegment segment, long i, float v) {
            store.store(segment, i, v);
        }

        /**
         * The most floats of {@link Matmul}'s scratch a product with a {@code [rows, cols]} weight
         * of this type grows it to: 0 for a type GEMM reads in place.
         */
        public long gemmScratchFloats(long rows, long cols) {
            return scratch.floats(rows, cols);
        }

        private interface View {
            TensorView over(MemorySegment segment, long byteOffset, int rows, int cols);
        }

        private interface Store {
            void store(MemorySegment segment, long i, float v);
        }

        private interface Scratch {
            long floats(long rows, long cols);
        }
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
