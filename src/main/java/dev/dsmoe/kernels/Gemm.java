package dev.dsmoe.kernels;

import java.lang.foreign.MemorySegment;

/**
 * Single-precision general matrix product on row-major matrices, A and C heap arrays and B a
 * heap array or (the second form) an fp32 memory segment:
 * {@code C = alpha * op(A) * op(B) + beta * C}, where {@code op(X)} is X or Xᵀ.
 *
 * <p>{@code C} is {@code [m, n]} with row stride {@code ldc}; {@code op(A)} is {@code [m, k]}
 * and {@code op(B)} is {@code [k, n]}. When {@code transA} is false A is stored {@code [m, k]}
 * with row stride {@code lda}, otherwise A is stored {@code [k, m]}; likewise B is stored
 * {@code [k, n]} or, transposed, {@code [n, k]}. The three forms training uses are
 * A·B (forward), Aᵀ·B (weight gradient) and A·Bᵀ (forward through {@code [out, in]} weights and
 * input gradient); {@code beta = 1} accumulates into C.
 *
 * <p>With {@code beta == 0} the previous contents of C are ignored (NaN included), as in BLAS.
 * Implementations use {@link Parallel} and must not be called from inside a parallel region
 * expecting parallel speed (they then run serially).
 */
public interface Gemm {

    void sgemm(boolean transA, boolean transB, int m, int n, int k,
               float alpha, float[] a, int aOff, int lda,
               float[] b, int bOff, int ldb,
               float beta, float[] c, int cOff, int ldc);

    /**
     * The same product with B an fp32 matrix in a memory segment, at byte {@code bOff}
     * (little-endian, row stride {@code ldb} floats): a weight memory-mapped from a checkpoint
     * or converted at load. A and C are heap arrays. OpenBLAS reads B in place; the Java backend
     * packs its panels straight from the segment. Results are those of the array form.
     */
    void sgemm(boolean transA, boolean transB, int m, int n, int k,
               float alpha, float[] a, int aOff, int lda,
               MemorySegment b, long bOff, int ldb,
               float beta, float[] c, int cOff, int ldc);

    /** Short backend name: {@code "blas"} or {@code "java"}. */
    String name();

    /** {@code C[m,n] (+)= A[m,k] · B[k,n]} with dense strides. */
    default void matmul(float[] a, float[] b, float[] c, int m, int n, int k, boolean accumulate) {
        sgemm(false, false, m, n, k, 1f, a, 0, k, b, 0, n, accumulate ? 1f : 0f, c, 0, n);
    }

    /** {@code C[m,n] (+)= A[m,k] · Bᵀ} where B is stored {@code [n,k]} (a PyTorch Linear weight). */
    default void matmulTransB(float[] a, float[] b, float[] c, int m, int n, int k, boolean accumulate) {
        sgemm(false, true, m, n, k, 1f, a, 0, k, b, 0, k, accumulate ? 1f : 0f, c, 0, n);
    }

    /** {@code C[m,n] (+)= Aᵀ · B} where A is stored {@code [k,m]} and B {@code [k,n]}. */
    default void matmulTransA(float[] a, float[] b, float[] c, int m, int n, int k, boolean accumulate) {
        sgemm(true, false, m, n, k, 1f, a, 0, m, b, 0, n, accumulate ? 1f : 0f, c, 0, n);
    }

    /** Checks arguments shared by every backend; throws IllegalArgumentException naming the bad one. */
    static void checkArgs(boolean transA, boolean transB, int m, int n, int k,
                          float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                          float[] c, int cOff, int ldc) {
        if (m < 0 || n < 0 || k < 0) {
            throw new IllegalArgumentException("gemm sizes must be >= 0: m=" + m + " n=" + n + " k=" + k);
        }
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        checkMatrix("A", a, aOff, lda, aRows, aCols);
        checkMatrix("B", b, bOff, ldb, bRows, bCols);
        checkMatrix("C", c, cOff, ldc, m, n);
    }

    /** {@link #checkArgs} for the segment form. */
    static void checkArgs(boolean transA, boolean transB, int m, int n, int k,
                          float[] a, int aOff, int lda, MemorySegment b, long bOff, int ldb,
                          float[] c, int cOff, int ldc) {
        if (m < 0 || n < 0 || k < 0) {
            throw new IllegalArgumentException("gemm sizes must be >= 0: m=" + m + " n=" + n + " k=" + k);
        }
        checkMatrix("A", a, aOff, lda, transA ? k : m, transA ? m : k);
        int rows = transB ? n : k, cols = transB ? k : n;
        if (rows > 0 && cols > 0) {
            if (ldb < cols) {
                throw new IllegalArgumentException("gemm: leading dimension of B (" + ldb
                        + ") is smaller than its column count (" + cols + ")");
            }
            long end = bOff + 4L * ((long) (rows - 1) * ldb + cols);
            if (bOff < 0 || end > b.byteSize()) {
                throw new IllegalArgumentException("gemm: B [" + rows + " x " + cols + ", ld " + ldb + "] at byte " + bOff
                        + " does not fit its segment of " + b.byteSize() + " bytes");
            }
        }
        checkMatrix("C", c, cOff, ldc, m, n);
    }

    private static void checkMatrix(String name, float[] x, int off, int ld, int rows, int cols) {
        if (rows == 0 || cols == 0) return;
        if (ld < cols) {
            throw new IllegalArgumentException("gemm: leading dimension of " + name + " (" + ld
                    + ") is smaller than its column count (" + cols + ")");
        }
        long last = off + (long) (rows - 1) * ld + cols;
        if (off < 0 || last > x.length) {
            throw new IllegalArgumentException("gemm: " + name + " [" + rows + " x " + cols + ", ld " + ld
                    + ", offset " + off + "] does not fit its array of " + x.length + " floats");
        }
    }
}
