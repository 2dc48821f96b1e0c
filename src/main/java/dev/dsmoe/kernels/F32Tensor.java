package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * An fp32 view: a slice of a {@code float[]} (training parameters, gradients, activations, an
 * inference model's norm gains) or of a memory segment (a weight mapped from a checkpoint or
 * converted at load), little-endian. GEMM reads it in place: heap arrays through the array form,
 * segments through the segment form.
 */
public final class F32Tensor extends TensorView {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    /** The heap array, or null over native memory. */
    private final float[] array;
    private final int off;
    private final MemorySegment segment;
    private final long byteOffset;

    private F32Tensor(float[] array, int off, MemorySegment segment, long byteOffset, int rows, int cols, int ld) {
        super(rows, cols, ld);
        this.array = array;
        this.off = off;
        this.segment = segment;
        this.byteOffset = byteOffset;
    }

    /** The {@code [rows, cols]} matrix at {@code array[off..]}, rows contiguous. */
    public static F32Tensor of(float[] array, int off, int rows, int cols) {
        return new F32Tensor(array, off, MemorySegment.ofArray(array), 4L * off, rows, cols, cols);
    }

    /** A whole array as a {@code [rows, cols]} matrix. */
    public static F32Tensor of(float[] array, int rows, int cols) {
        return of(array, 0, rows, cols);
    }

    /** The {@code [rows, cols]} matrix at byte {@code byteOffset} of a segment, rows contiguous. */
    public static F32Tensor over(MemorySegment segment, long byteOffset, int rows, int cols) {
        return new F32Tensor(null, 0, segment, byteOffset, rows, cols, cols);
    }

    /** Writes element {@code i} of an fp32 segment (converting weights at load). */
    public static void store(MemorySegment segment, long i, float v) {
        segment.setAtIndex(F32, i, v);
    }

    @Override
    F32Tensor slice(long offset, int rows, int cols, int ld) {
        return new F32Tensor(array, array == null ? 0 : Math.toIntExact(off + offset), segment, byteOffset + 4 * offset,
                rows, cols, ld);
    }

    @Override
    public F32Tensor expert(int e) {
        return (F32Tensor) super.expert(e);
    }

    @Override
    public F32Tensor stackedExperts(int n) {
        return (F32Tensor) super.stackedExperts(n);
    }

    @Override
    public F32Tensor expertColumns(int n) {
        return (F32Tensor) super.expertColumns(n);
    }

    @Override
    public float[] array() {
        if (array == null) throw new UnsupportedOperationException("an fp32 view of native memory has no heap array");
        return array;
    }

    @Override
    public int off() {
        if (array == null) throw new UnsupportedOperationException("an fp32 view of native memory has no heap array");
        return off;
    }

    @Override
    public int elementBytes() {
        return 4;
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
        if (array != null) System.arraycopy(array, off + r * ld, dst, dstOff, cols);
        else MemorySegment.copy(segment, F32, byteOffset + 4L * r * ld, dst, dstOff, cols);
    }

    /** GEMM reads fp32 in place, a heap array or a segment: no scratch. */
    static long gemmScratchFloats(long rows, long cols) {
        return 0;
    }

    @Override
    void gemm(Matmul mm, float[] x, int xOff, int ldx, int m, float[] y, int yOff, int ldy, float beta) {
        if (array != null) {
            Kernels.gemm().sgemm(false, true, m, rows, cols, 1f, x, xOff, ldx, array, off, ld, beta, y, yOff, ldy);
        } else {
            Kernels.gemm().sgemm(false, true, m, rows, cols, 1f, x, xOff, ldx, segment, byteOffset, ld, beta, y, yOff, ldy);
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
            for (int r = r0; r < r1; r++) row(w, wOff + 4L * r * cols, cols, x, xOff, 1, y, yOff + r, 0, accumulate);
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
                    row(w, wOff + 4L * r * cols, cols, x, xOff + i0 * cols, mb, y, yOff + i0 * ldy + r, ldy, accumulate);
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
                row(w, wOff + e * stride + 4L * r * cols, cols, x, xOff, 1, y, yOff + i, 0, false);
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
                for (int r = r0; r < r1; r++) row(w, base + 4L * r * cols, cols, x, xOff + i * cols, 1, y, yOff + r, 0, acc);
            }
        });
    }

    // One weight row against up to four input rows: the weight vector is loaded once per lane block.
    private static void row(MemorySegment w, long off, int cols, float[] x, int xo, int mb,
                            float[] y, int yo, int ldy, boolean acc) {
        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
        int c = 0, bound = F.loopBound(cols);
        for (; c < bound; c += L) {
            FloatVector wv = FloatVector.fromMemorySegment(F, w, off + 4L * c, LE);
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
            float wv = w.get(F32, off + 4L * c);
            t0 += wv * x[xo + c];
            if (mb > 1) t1 += wv * x[xo + cols + c];
            if (mb > 2) t2 += wv * x[xo + 2 * cols + c];
            if (mb > 3) t3 += wv * x[xo + 3 * cols + c];
        }
        MatVec.store(y, yo, ldy, mb, acc, t0, t1, t2, t3);
    }
}
