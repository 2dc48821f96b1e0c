package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Pure-Java GEMM on the Vector API, blocked and packed in the style of GotoBLAS/BLIS.
 *
 * <p>Structure of one (sub-)product {@code C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C}:
 * <pre>
 *   for jc over n in steps of NC                     B block   [KC x NC]  (L3)
 *     for pc over k in steps of KC                   packed once per (jc, pc)
 *       pack op(B)[pc:pc+kc, jc:jc+nc] into NR-wide panels
 *       for ic over m in steps of MC                 A block   [MC x KC]  (L2)
 *         pack op(A)[ic:ic+mc, pc:pc+kc] into MR-tall panels
 *         for jr over nc in steps of NR              B panel   [KC x NR]  (L1)
 *           for ir over mc in steps of MR
 *             micro-kernel: MR x NR tile of C, accumulators in registers
 * </pre>
 * Packing resolves the transposes (and strides/offsets), so the micro-kernel has one code path
 * that reads two contiguous arrays: an MR-tall A panel stored k-major ({@code MR} floats per k)
 * and an NR-wide B panel stored k-major ({@code NR} floats per k). Panels at the edges are
 * zero-padded, so the kernel always computes a full tile into a per-thread scratch tile; merging
 * that into C (alpha, beta) is vectorised for full tiles and scalar for the edge ones.
 *
 * <p>The tile is {@value #MR} rows by {@value #NV} vectors of {@link FloatVector#SPECIES_PREFERRED}
 * (16 floats on AVX-512, giving an 8 x 32 tile held in 16 of the 32 zmm registers; measured
 * faster than 6 x 64, 8 x 48 and 12 x 32 with C2).
 *
 * <p>Parallelism: the larger of m and n is split into contiguous, tile-aligned ranges, one per
 * {@link Parallel} thread; each thread runs the blocked loop above on its own sub-product with its
 * own packing buffers (thread-local, grown on demand and reused across calls). Splitting the larger
 * dimension means the operand packed redundantly by every thread is the smaller one.
 */
public final class JavaGemm implements Gemm {

    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int VL = S.length();

    /** Micro-tile: MR rows of C by NV vectors (NR floats) of columns. */
    static final int MR = 8;
    static final int NV = 2;
    static final int NR = NV * VL;

    /** Cache blocking (rows of C per A block, k per block, columns of C per B block). */
    static final int KC = Integer.getInteger("dsmoe.gemm.kc", 256);
    static final int MC = roundUp(Integer.getInteger("dsmoe.gemm.mc", 256), MR);
    static final int NC = roundUp(Integer.getInteger("dsmoe.gemm.nc", 4096), NR);

    /** Below this many multiply-adds per thread a parallel split is not worth its overhead. */
    private static final long MIN_FMAS_PER_THREAD = 1L << 18;

    /** Per-thread packing buffers, kept between calls so steady-state training does not allocate. */
    private static final class Buffers {
        float[] a = new float[0];
        float[] b = new float[0];
        final float[] acc = new float[MR * NR];
    }

    private static final ThreadLocal<Buffers> BUFFERS = ThreadLocal.withInitial(Buffers::new);

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, float[] a, int aOff, int lda,
                      float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        product(transA, transB, m, n, k, alpha, a, aOff, lda, b, null, bOff, ldb, beta, c, cOff, ldc);
    }

    /** The segment form: the same blocked product, B's panels packed straight from the segment. */
    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, float[] a, int aOff, int lda,
                      MemorySegment b, long bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        product(transA, transB, m, n, k, alpha, a, aOff, lda, null, b, bOff, ldb, beta, c, cOff, ldc);
    }

    /**
     * B is {@code b} from element {@code bPos} or, when {@code b} is null, the segment {@code bs}
     * from byte {@code bPos}. (One position for both keeps the region's lambda as small as it was.)
     */
    private static void product(boolean transA, boolean transB, int m, int n, int k,
                                float alpha, float[] a, int aOff, int lda,
                                float[] b, MemorySegment bs, long bPos, int ldb,
                                float beta, float[] c, int cOff, int ldc) {
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0f) {
            // No product term: C = beta * C (and, as in BLAS, A and B are not read).
            scale(m, n, beta, c, cOff, ldc);
            return;
        }
        // Split the larger dimension in whole tiles; each chunk is an independent sub-product.
        int tileSize = m >= n ? MR : NR;
        int tiles = ((m >= n ? m : n) + tileSize - 1) / tileSize;
        long fmasPerTile = (long) tileSize * (m >= n ? n : m) * k;
        int grain = (int) Math.max(1, Math.min(tiles, MIN_FMAS_PER_THREAD / fmasPerTile));
        Parallel.forRange(tiles, grain, (t0, t1) -> {
            boolean splitM = m >= n;
            int tile = splitM ? MR : NR, lo = t0 * tile, hi = Math.min(splitM ? m : n, t1 * tile);
            if (splitM) {
                blocked(transA, transB, lo, hi, 0, n, k, alpha, a, aOff, lda, b, bs, bPos, ldb, beta, c, cOff, ldc);
            } else {
                blocked(transA, transB, 0, m, lo, hi, k, alpha, a, aOff, lda, b, bs, bPos, ldb, beta, c, cOff, ldc);
            }
        });
    }

    @Override
    public String name() {
        return "java";
    }

    /** Serial blocked product for rows {@code [m0, m1)} and columns {@code [n0, n1)} of C. */
    private static void blocked(boolean transA, boolean transB, int m0, int m1, int n0, int n1, int k,
                                float alpha, float[] a, int aOff, int lda,
                                float[] b, MemorySegment bs, long bPos, int ldb,
                                float beta, float[] c, int cOff, int ldc) {
        Buffers buf = BUFFERS.get();
        // Even K blocks (e.g. k=300 -> 2 x 150 rather than 256 + 44) keep every block efficient.
        int kBlocks = (k + KC - 1) / KC;
        int kcMax = (k + kBlocks - 1) / kBlocks;
        int ncMax = Math.min(NC, roundUp(n1 - n0, NR));
        int mcMax = Math.min(MC, roundUp(m1 - m0, MR));
        if (buf.b.length < kcMax * ncMax) buf.b = new float[kcMax * ncMax];
        if (buf.a.length < kcMax * mcMax) buf.a = new float[kcMax * mcMax];
        float[] pa = buf.a, pb = buf.b;

        for (int jc = n0; jc < n1; jc += NC) {
            int nc = Math.min(NC, n1 - jc);
            for (int pc = 0; pc < k; pc += kcMax) {
                int kc = Math.min(kcMax, k - pc);
                // Only the first K block applies the caller's beta; later ones accumulate.
                float betaK = pc == 0 ? beta : 1f;
                if (b != null) packB(transB, b, (int) bPos, ldb, pc, kc, jc, nc, pb);
                else packB(transB, bs, bPos, ldb, pc, kc, jc, nc, pb);
                for (int ic = m0; ic < m1; ic += MC) {
                    int mc = Math.min(MC, m1 - ic);
                    packA(transA, a, aOff, lda, ic, mc, pc, kc, pa);
                    macroKernel(pa, pb, mc, nc, kc, alpha, betaK, c, cOff + ic * ldc + jc, ldc, buf.acc);
                }
            }
        }
    }

    /** Runs the micro-kernel over an {@code [mc, nc]} block of C from packed A and B blocks. */
    private static void macroKernel(float[] pa, float[] pb, int mc, int nc, int kc,
                                    float alpha, float beta, float[] c, int cBase, int ldc, float[] acc) {
        for (int jr = 0; jr < nc; jr += NR) {
            int nr = Math.min(NR, nc - jr);
            for (int ir = 0; ir < mc; ir += MR) {
                // Panel q of A starts at q * MR * kc, panel q of B at q * NR * kc.
                kernel(pa, ir * kc, pb, jr * kc, kc, acc);
                mergeTile(acc, Math.min(MR, mc - ir), nr, alpha, beta, c, cBase + ir * ldc + jr, ldc);
            }
        }
    }

    /**
     * The register-tiled micro-kernel: {@code acc[8, NR] = Apanel · Bpanel} over {@code kc}, where
     * the A panel holds 8 floats per k (one per row of the tile) and the B panel NR floats (two
     * vectors) per k; the tile goes to {@code acc} (row stride NR) for {@link #mergeTile} to apply.
     *
     * <p>Written out by hand because C2 keeps vectors in registers only when each accumulator is
     * its own local and is only ever consumed by fully intrinsified operations. Handing a
     * loop-carried vector to anything that may need it as an object (a call not inlined, a virtual
     * call) makes C2 box it on every iteration, which is 10x slower; hence the plain intoArray
     * at the end and the alpha/beta arithmetic in a separate method.
     */
    private static void kernel(float[] pa, int ia, float[] pb, int ib, int kc, float[] acc) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S);
        FloatVector c60 = FloatVector.zero(S), c61 = FloatVector.zero(S);
        FloatVector c70 = FloatVector.zero(S), c71 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, ia += MR, ib += NR) {
            FloatVector b0 = FloatVector.fromArray(S, pb, ib);
            FloatVector b1 = FloatVector.fromArray(S, pb, ib + VL);
            FloatVector x0 = FloatVector.broadcast(S, pa[ia]);
            c00 = b0.fma(x0, c00);
            c01 = b1.fma(x0, c01);
            FloatVector x1 = FloatVector.broadcast(S, pa[ia + 1]);
            c10 = b0.fma(x1, c10);
            c11 = b1.fma(x1, c11);
            FloatVector x2 = FloatVector.broadcast(S, pa[ia + 2]);
            c20 = b0.fma(x2, c20);
            c21 = b1.fma(x2, c21);
            FloatVector x3 = FloatVector.broadcast(S, pa[ia + 3]);
            c30 = b0.fma(x3, c30);
            c31 = b1.fma(x3, c31);
            FloatVector x4 = FloatVector.broadcast(S, pa[ia + 4]);
            c40 = b0.fma(x4, c40);
            c41 = b1.fma(x4, c41);
            FloatVector x5 = FloatVector.broadcast(S, pa[ia + 5]);
            c50 = b0.fma(x5, c50);
            c51 = b1.fma(x5, c51);
            FloatVector x6 = FloatVector.broadcast(S, pa[ia + 6]);
            c60 = b0.fma(x6, c60);
            c61 = b1.fma(x6, c61);
            FloatVector x7 = FloatVector.broadcast(S, pa[ia + 7]);
            c70 = b0.fma(x7, c70);
            c71 = b1.fma(x7, c71);
        }
        c00.intoArray(acc, 0 * NR);
        c01.intoArray(acc, 0 * NR + VL);
        c10.intoArray(acc, 1 * NR);
        c11.intoArray(acc, 1 * NR + VL);
        c20.intoArray(acc, 2 * NR);
        c21.intoArray(acc, 2 * NR + VL);
        c30.intoArray(acc, 3 * NR);
        c31.intoArray(acc, 3 * NR + VL);
        c40.intoArray(acc, 4 * NR);
        c41.intoArray(acc, 4 * NR + VL);
        c50.intoArray(acc, 5 * NR);
        c51.intoArray(acc, 5 * NR + VL);
        c60.intoArray(acc, 6 * NR);
        c61.intoArray(acc, 6 * NR + VL);
        c70.intoArray(acc, 7 * NR);
        c71.intoArray(acc, 7 * NR + VL);
    }

    /**
     * {@code C[mr, nr] = alpha * acc[mr, nr] + beta * C} for one tile at {@code c[ci]} (row stride
     * ldc); acc has row stride NR. beta == 0 never reads C, so NaN there is overwritten.
     */
    private static void mergeTile(float[] acc, int mr, int nr, float alpha, float beta,
                                  float[] c, int ci, int ldc) {
        if (mr == MR && nr == NR) {
            FloatVector al = FloatVector.broadcast(S, alpha), bt = FloatVector.broadcast(S, beta);
            for (int r = 0; r < MR; r++, ci += ldc) {
                for (int v = 0; v < NR; v += VL) {
                    FloatVector x = al.mul(FloatVector.fromArray(S, acc, r * NR + v));
                    if (beta != 0f) x = FloatVector.fromArray(S, c, ci + v).fma(bt, x);
                    x.intoArray(c, ci + v);
                }
            }
        } else {
            for (int r = 0; r < mr; r++, ci += ldc) {
                for (int j = 0; j < nr; j++) {
                    float x = alpha * acc[r * NR + j];
                    c[ci + j] = beta == 0f ? x : x + beta * c[ci + j];
                }
            }
        }
    }

    /**
     * Packs {@code op(A)[i0:i0+mc, p0:p0+kc]} into MR-tall panels: panel q holds, for each k, the MR
     * values of rows {@code i0+q*MR ..}; rows past {@code mc} are zero.
     */
    private static void packA(boolean transA, float[] a, int aOff, int lda,
                              int i0, int mc, int p0, int kc, float[] pa) {
        for (int ir = 0; ir < mc; ir += MR) {
            int mr = Math.min(MR, mc - ir);
            int dst = ir * kc;
            if (transA) {
                // A stored [k, m]: the MR values for one k are contiguous in a row of A.
                int src = aOff + p0 * lda + i0 + ir;
                for (int p = 0; p < kc; p++, src += lda, dst += MR) {
                    for (int r = 0; r < MR; r++) pa[dst + r] = r < mr ? a[src + r] : 0f;
                }
            } else {
                // A stored [m, k]: walk the MR rows together so reads stay sequential per row.
                int src = aOff + (i0 + ir) * lda + p0;
                if (mr == MR) {
                    for (int p = 0; p < kc; p++, dst += MR) {
                        int s = src + p;
                        pa[dst] = a[s];
                        pa[dst + 1] = a[s + lda];
                        pa[dst + 2] = a[s + 2 * lda];
                        pa[dst + 3] = a[s + 3 * lda];
                        pa[dst + 4] = a[s + 4 * lda];
                        pa[dst + 5] = a[s + 5 * lda];
                        pa[dst + 6] = a[s + 6 * lda];
                        pa[dst + 7] = a[s + 7 * lda];
                    }
                } else {
                    for (int p = 0; p < kc; p++, dst += MR) {
                        for (int r = 0; r < MR; r++) pa[dst + r] = r < mr ? a[src + r * lda + p] : 0f;
                    }
                }
            }
        }
    }

    /**
     * Packs {@code op(B)[p0:p0+kc, j0:j0+nc]} into NR-wide panels: panel q holds, for each k, the NR
     * values of columns {@code j0+q*NR ..}; columns past {@code nc} are zero.
     */
    private static void packB(boolean transB, float[] b, int bOff, int ldb,
                              int p0, int kc, int j0, int nc, float[] pb) {
        for (int jr = 0; jr < nc; jr += NR) {
            int nr = Math.min(NR, nc - jr);
            int dst = jr * kc;
            if (!transB) {
                // B stored [k, n]: each k contributes a contiguous run of the row.
                int src = bOff + p0 * ldb + j0 + jr;
                for (int p = 0; p < kc; p++, src += ldb, dst += NR) {
                    System.arraycopy(b, src, pb, dst, nr);
                    if (nr < NR) java.util.Arrays.fill(pb, dst + nr, dst + NR, 0f);
                }
            } else {
                // B stored [n, k]: column j of op(B) is row j of B; scatter it with stride NR.
                for (int j = 0; j < nr; j++) {
                    int src = bOff + (j0 + jr + j) * ldb + p0;
                    for (int p = 0, d = dst + j; p < kc; p++, d += NR) pb[d] = b[src + p];
                }
                for (int j = nr; j < NR; j++) {
                    for (int p = 0, d = dst + j; p < kc; p++, d += NR) pb[d] = 0f;
                }
            }
        }
    }

    /** {@link #packB} from an fp32 segment (little-endian) at byte {@code bByte}. */
    private static void packB(boolean transB, MemorySegment b, long bByte, int ldb,
                              int p0, int kc, int j0, int nc, float[] pb) {
        for (int jr = 0; jr < nc; jr += NR) {
            int nr = Math.min(NR, nc - jr);
            int dst = jr * kc;
            if (!transB) {
                long src = bByte + 4L * ((long) p0 * ldb + j0 + jr);
                for (int p = 0; p < kc; p++, src += 4L * ldb, dst += NR) {
                    MemorySegment.copy(b, F32, src, pb, dst, nr);
                    if (nr < NR) java.util.Arrays.fill(pb, dst + nr, dst + NR, 0f);
                }
            } else {
                for (int j = 0; j < nr; j++) {
                    long src = bByte + 4L * ((long) (j0 + jr + j) * ldb + p0);
                    for (int p = 0, d = dst + j; p < kc; p++, d += NR) pb[d] = b.get(F32, src + 4L * p);
                }
                for (int j = nr; j < NR; j++) {
                    for (int p = 0, d = dst + j; p < kc; p++, d += NR) pb[d] = 0f;
                }
            }
        }
    }

    /** {@code C = beta * C}; beta == 0 writes zeros without reading C. */
    private static void scale(int m, int n, float beta, float[] c, int cOff, int ldc) {
        for (int i = 0; i < m; i++) {
            int row = cOff + i * ldc;
            if (beta == 0f) {
                java.util.Arrays.fill(c, row, row + n, 0f);
            } else if (beta != 1f) {
                for (int j = 0; j < n; j++) c[row + j] *= beta;
            }
        }
    }

    private static int roundUp(int x, int multiple) {
        return (x + multiple - 1) / multiple * multiple;
    }
}
