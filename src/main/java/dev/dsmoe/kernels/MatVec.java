package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Memory-bound products for decode: {@code y[m, rows] = x[m, cols] · Wᵀ} with a weight matrix
 * W {@code [rows, cols]} (a PyTorch {@code Linear} weight, {@code [out, in]}) and a small number
 * of input rows m (1 for single-stream decode, a few for small batches).
 *
 * <p>Each weight row is read once and dotted against all m inputs, so the cost is one pass over
 * the weights whatever m is: the speed limit is memory bandwidth. Weights live in a
 * {@link MemorySegment} (memory-mapped from a checkpoint, or a heap array wrapped with
 * {@code MemorySegment.ofArray}), fp32 or bf16, little-endian; activations are fp32 arrays.
 * Rows are split across {@link Parallel}'s threads, so the segment must be readable from any
 * thread (a shared, global or automatic arena; not a confined one).
 */
public final class MatVec {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Shorts for one float vector's worth of bf16 lanes (half the vector width in bits). */
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class,
            jdk.incubator.vector.VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfShort BF16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);

    /** Rows handed to one thread at least, so tiny matrices stay on one core. */
    private static final int ROW_GRAIN = 64;

    private MatVec() {}

    /** Weight element type. */
    public enum DType {
        F32(4), BF16(2);
        public final int bytes;

        DType(int bytes) {
            this.bytes = bytes;
        }
    }

    /**
     * {@code y[i, r] (+)= Σ_c x[i, c] · W[r, c]} for i &lt; m, r &lt; rows.
     *
     * @param w     weights, {@code rows * cols} elements of {@code dtype} starting at byte {@code wOff}
     * @param x     inputs {@code [m, cols]} at {@code xOff}, row stride {@code cols}
     * @param y     outputs {@code [m, rows]} at {@code yOff}, row stride {@code ldy}
     */
    public static void mul(DType dtype, MemorySegment w, long wOff, int rows, int cols,
                           float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        if (rows < 0 || cols < 0 || m < 0) throw new IllegalArgumentException("negative size");
        if (wOff + (long) rows * cols * dtype.bytes > w.byteSize()) {
            throw new IllegalArgumentException("mat-vec: weights [" + rows + " x " + cols + "] at byte "
                    + wOff + " exceed the segment of " + w.byteSize() + " bytes");
        }
        if (xOff + (long) m * cols > x.length || (m > 0 && yOff + (long) (m - 1) * ldy + rows > y.length)) {
            throw new IllegalArgumentException("mat-vec: x or y too small for m=" + m);
        }
        // One lambda per weight type and for one input row (decode) apart: a shared one mixes their
        // profiles, and C2 then recompiles it (uncommon traps) whenever the other case shows up.
        // With the row count a literal 1, C2 folds the row kernels' multi-row branches away.
        if (dtype == DType.F32 && m == 1) {
            Parallel.forRange(rows, ROW_GRAIN, (r0, r1) -> {
                for (int r = r0; r < r1; r++) rowF32(w, wOff + 4L * r * cols, cols, x, xOff, 1, y, yOff + r, ldy, accumulate);
            });
        } else if (dtype == DType.F32) {
            Parallel.forRange(rows, ROW_GRAIN, (r0, r1) -> {
                for (int i0 = 0; i0 < m; i0 += 4) {
                    int mb = Math.min(4, m - i0);
                    for (int r = r0; r < r1; r++) {
                        rowF32(w, wOff + 4L * r * cols, cols, x, xOff + i0 * cols, mb, y, yOff + i0 * ldy + r, ldy, accumulate);
                    }
                }
            });
        } else if (m == 1) {
            Parallel.forRange(rows, ROW_GRAIN, (r0, r1) -> {
                for (int r = r0; r < r1; r++) rowBf16(w, wOff + 2L * r * cols, cols, x, xOff, 1, y, yOff + r, ldy, accumulate);
            });
        } else {
            Parallel.forRange(rows, ROW_GRAIN, (r0, r1) -> {
                for (int i0 = 0; i0 < m; i0 += 4) {
                    int mb = Math.min(4, m - i0);
                    for (int r = r0; r < r1; r++) {
                        rowBf16(w, wOff + 2L * r * cols, cols, x, xOff + i0 * cols, mb, y, yOff + i0 * ldy + r, ldy, accumulate);
                    }
                }
            });
        }
    }

    /** Heap fp32 convenience form: W is {@code float[]} at element offset {@code wOff}. */
    public static void mul(float[] w, int wOff, int rows, int cols,
                           float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        mul(DType.F32, MemorySegment.ofArray(w), 4L * wOff, rows, cols, x, xOff, m, y, yOff, ldy, accumulate);
    }

    /** Heap bf16 convenience form: W is {@code short[]} of bf16 bits at element offset {@code wOff}. */
    public static void mul(short[] w, int wOff, int rows, int cols,
                           float[] x, int xOff, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        mul(DType.BF16, MemorySegment.ofArray(w), 2L * wOff, rows, cols, x, xOff, m, y, yOff, ldy, accumulate);
    }

    /**
     * Selected experts' products against one shared input, for decode: for {@code i < count},
     * {@code y[yOff + i*rows + r] = Σ_c x[xOff + c] · W_e[r, c]} with {@code e = experts[eOff + i]}
     * and {@code W_e} the {@code [rows, cols]} matrix at byte {@code wOff + e*expertStride}. Only
     * the selected experts' weights are read, all of them in one parallel pass over
     * {@code count*rows} rows.
     */
    public static void mulSelected(DType dtype, MemorySegment w, long wOff, long expertStride, int[] experts,
                                   int eOff, int count, int rows, int cols, float[] x, int xOff, float[] y, int yOff) {
        checkSelected(dtype, w, wOff, expertStride, experts, eOff, count, rows, cols);
        if (xOff + (long) cols > x.length || yOff + (long) count * rows > y.length) {
            throw new IllegalArgumentException("mat-vec: x or y too small for " + count + " experts");
        }
        Parallel.forRange(count * rows, ROW_GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                int e = experts[eOff + i / rows], r = i % rows;
                long rowOff = wOff + e * expertStride + (long) r * cols * dtype.bytes;
                if (dtype == DType.F32) rowF32(w, rowOff, cols, x, xOff, 1, y, yOff + i, 0, false);
                else rowBf16(w, rowOff, cols, x, xOff, 1, y, yOff + i, 0, false);
            }
        });
    }

    /**
     * Sum of selected experts' products, each with its own input, for decode:
     * {@code y[yOff + r] (+)= Σ_i Σ_c x[xOff + i*cols + c] · W_e[r, c]} with
     * {@code e = experts[eOff + i]}, {@code i < count} (e.g. the gate-scaled hidden rows of the
     * selected experts through their output projections). Rows are split across threads; each
     * output is summed over the experts in list order.
     */
    public static void mulSelectedSum(DType dtype, MemorySegment w, long wOff, long expertStride, int[] experts,
                                      int eOff, int count, int rows, int cols, float[] x, int xOff, float[] y,
                                      int yOff, boolean accumulate) {
        checkSelected(dtype, w, wOff, expertStride, experts, eOff, count, rows, cols);
        if (xOff + (long) count * cols > x.length || yOff + (long) rows > y.length) {
            throw new IllegalArgumentException("mat-vec: x or y too small for " + count + " experts");
        }
        if (count == 0) {
            if (!accumulate) java.util.Arrays.fill(y, yOff, yOff + rows, 0f);
            return;
        }
        Parallel.forRange(rows, ROW_GRAIN, (r0, r1) -> {
            for (int i = 0; i < count; i++) {
                long base = wOff + experts[eOff + i] * expertStride;
                boolean acc = accumulate || i > 0;
                for (int r = r0; r < r1; r++) {
                    long rowOff = base + (long) r * cols * dtype.bytes;
                    if (dtype == DType.F32) rowF32(w, rowOff, cols, x, xOff + i * cols, 1, y, yOff + r, 0, acc);
                    else rowBf16(w, rowOff, cols, x, xOff + i * cols, 1, y, yOff + r, 0, acc);
                }
            }
        });
    }

    private static void checkSelected(DType dtype, MemorySegment w, long wOff, long expertStride, int[] experts,
                                      int eOff, int count, int rows, int cols) {
        if (rows < 0 || cols < 0 || count < 0) throw new IllegalArgumentException("negative size");
        if (expertStride < (long) rows * cols * dtype.bytes) {
            throw new IllegalArgumentException("mat-vec: expert stride " + expertStride + " bytes is smaller than one ["
                    + rows + " x " + cols + "] matrix");
        }
        for (int i = 0; i < count; i++) {
            int e = experts[eOff + i];
            if (e < 0 || wOff + e * expertStride + (long) rows * cols * dtype.bytes > w.byteSize()) {
                throw new IllegalArgumentException("mat-vec: expert " + e + " lies outside the weight segment of "
                        + w.byteSize() + " bytes");
            }
        }
    }

    // One weight row against up to four input rows: the weight vector is loaded once per lane block.
    private static void rowF32(MemorySegment w, long off, int cols, float[] x, int xo, int mb,
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
        finish(false, w, off, c, cols, x, xo, mb, y, yo, ldy, acc, t0, t1, t2, t3);
    }

    private static void rowBf16(MemorySegment w, long off, int cols, float[] x, int xo, int mb,
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
        finish(true, w, off, c, cols, x, xo, mb, y, yo, ldy, acc, t0, t1, t2, t3);
    }

    // The end of a row kernel, shared by both: the scalar tail from column c on (weights bf16 or
    // fp32) added to the lane sums t0..t(mb-1), and the store. Called once per row.
    private static void finish(boolean bf16, MemorySegment w, long off, int c, int cols, float[] x, int xo,
                               int mb, float[] y, int yo, int ldy, boolean acc,
                               float t0, float t1, float t2, float t3) {
        for (; c < cols; c++) {
            float wv = bf16 ? Bf16.toFloat(w.get(BF16, off + 2L * c)) : w.get(F32, off + 4L * c);
            t0 += wv * x[xo + c];
            if (mb > 1) t1 += wv * x[xo + cols + c];
            if (mb > 2) t2 += wv * x[xo + 2 * cols + c];
            if (mb > 3) t3 += wv * x[xo + 3 * cols + c];
        }
        store(y, yo, ldy, mb, acc, t0, t1, t2, t3);
    }

    private static void store(float[] y, int yo, int ldy, int mb, boolean acc,
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
