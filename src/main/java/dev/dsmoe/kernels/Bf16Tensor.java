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
 * load). Its mat-vec widens each lane block to fp32 as it reads it; GEMM gets its rows unpacked
 * to fp32 a block at a time, each weight once per product.
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
        long o = byteOffset + 2L * r * ld;
        for (int i = 0; i < cols; i++) dst[dstOff + i] = Bf16.toFloat(segment.get(BF16, o + 2L * i));
    }

    /** The scratch {@link #gemm} unpacks a {@code [rows, cols]} weight into. */
    static long gemmScratchFloats(long rows, long cols) {
        return Matmul.scratchFloats(rows, cols);
    }

    /** Unpacks {@link Matmul#UNPACK_ROWS} weight rows at a time into the fp32 scratch, one product per block. */
    @Override
    void gemm(Matmul mm, float[] x, int xOff, int ldx, int m, float[] y, int yOff, int ldy, float beta) {
        int block = Math.min(rows, Matmul.UNPACK_ROWS);
        float[] scratch = mm.scratch(block * cols);
        for (int r0 = 0; r0 < rows; r0 += block) {
            int b = Math.min(block, rows - r0), n = b * cols;
            long o = byteOffset + 2L * r0 * ld;
            for (int i = 0; i < n; i++) scratch[i] = Bf16.toFloat(segment.get(BF16, o + 2L * i));
            Kernels.gemm().sgemm(false, true, m, b, cols, 1f, x, xOff, ldx, scratch, 0, cols, beta, y, yOff + r0, ldy);
        }
    }

    // The parallel loops over the row kernel, one lambda each (TensorView.matVec says why);
    // TensorView has checked the arguments and worked out the experts' offsets.

    @Override
    void matVecOneRow(float[] x, int xOff, float[] y, int yOff, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols;
        Parallel.forRange(rows, MatVec.ROW_GRAIN, (r0, r1) -> {
            for (int r = r0; r < r1; r++) row(w, wOff + 2L * r * cols, cols, x, xOff, 1, y, yOff + r, 0, accumulate);
        });
    }

    @Override
    void matVecRows(float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        MemorySegment w = segment;
        long wOff = byteOffset;
        int cols = this.cols;
        Parallel.forRange(rows, MatVec.ROW_GRAIN, (r0, r1) -> {
            for (int i0 = 0; i0 < m; i0 += 4) {
                int mb = Math.min(4, m - i0);
                for (int r = r0; r < r1; r++) {
                    row(w, wOff + 2L * r * cols, cols, x, xOff + i0 * cols, mb, y, yOff + i0 * ldy + r, ldy, accumulate);
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
