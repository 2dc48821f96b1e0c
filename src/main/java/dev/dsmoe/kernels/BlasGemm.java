package dev.dsmoe.kernels;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * GEMM through OpenBLAS {@code cblas_sgemm}, the native library bundled in
 * {@code org.bytedeco:openblas} (JavaCPP extracts and loads it; no system install).
 *
 * <p>The call is made with the Foreign Function &amp; Memory API as a <em>critical</em> downcall
 * that may read the Java heap directly: the {@code float[]} tensors are handed to OpenBLAS in place,
 * without the copy that JNI array passing makes. (Measured in BENCHMARKS.md: JavaCPP's
 * {@code float[]} overload copies A, B and C on every call.)
 */
public final class BlasGemm implements Gemm {

    private static final int ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;

    private final MethodHandle sgemm;
    private final MethodHandle setThreads;

    private BlasGemm(MethodHandle sgemm, MethodHandle setThreads) {
        this.sgemm = sgemm;
        this.setThreads = setThreads;
    }

    /**
     * Loads OpenBLAS and binds {@code cblas_sgemm}.
     *
     * @throws UnsupportedOperationException with the reason when the native library cannot load
     */
    public static BlasGemm load() {
        try {
            org.bytedeco.javacpp.Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        } catch (Throwable e) {
            throw new UnsupportedOperationException("OpenBLAS native library did not load: " + e, e);
        }
        Linker linker = Linker.nativeLinker();
        SymbolLookup lookup = SymbolLookup.loaderLookup();
        MemorySegment fn = lookup.find("cblas_sgemm")
                .orElseThrow(() -> new UnsupportedOperationException("cblas_sgemm not found in the loaded OpenBLAS"));
        FunctionDescriptor desc = FunctionDescriptor.ofVoid(
                ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                ValueLayout.JAVA_FLOAT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT,
                ValueLayout.ADDRESS, ValueLayout.JAVA_INT,
                ValueLayout.JAVA_FLOAT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT);
        MethodHandle sgemm = linker.downcallHandle(fn, desc, Linker.Option.critical(true));
        MethodHandle threads = lookup.find("openblas_set_num_threads")
                .map(f -> linker.downcallHandle(f, FunctionDescriptor.ofVoid(ValueLayout.JAVA_INT)))
                .orElse(null);
        BlasGemm g = new BlasGemm(sgemm, threads);
        g.setThreads(1); // the engine's own pool splits the work: see sgemm
        return g;
    }

    /** Tells OpenBLAS how many threads to use (it keeps its own pool). */
    public void setThreads(int n) {
        if (setThreads == null) return;
        try {
            setThreads.invokeExact(n);
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }

    /** Smallest m·n·k worth splitting across threads (a call costs a few microseconds). */
    private static final long PARALLEL_WORK = 1L << 18;

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, float[] a, int aOff, int lda,
                      float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (m == 0 || n == 0) return;
        product(transA, transB, m, n, k, alpha, MemorySegment.ofArray(a), 4L * aOff, lda,
                MemorySegment.ofArray(b), 4L * bOff, ldb, beta, MemorySegment.ofArray(c), 4L * cOff, ldc);
    }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, float[] a, int aOff, int lda,
                      MemorySegment b, long bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (m == 0 || n == 0) return;
        product(transA, transB, m, n, k, alpha, MemorySegment.ofArray(a), 4L * aOff, lda, b, bOff, ldb,
                beta, MemorySegment.ofArray(c), 4L * cOff, ldc);
    }

    /**
     * OpenBLAS runs single-threaded; the product is split across {@link Parallel}'s threads by
     * blocks of C's rows or columns, whichever dimension is larger. OpenBLAS's own threads spin
     * after each call and then compete with the engine's pool for the cores (measured: training
     * steps several times slower on 2 cores); one pool for everything avoids that, and a fixed
     * split keeps results identical run to run. Offsets are in bytes.
     */
    private void product(boolean transA, boolean transB, int m, int n, int k, float alpha,
                         MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                         float beta, MemorySegment c, long cOff, int ldc) {
        int threads = Parallel.threads();
        if (threads == 1 || (long) m * n * k < PARALLEL_WORK || Math.max(m, n) < 32) {
            call(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        boolean byRows = m >= n;
        int dim = byRows ? m : n;
        int blocks = Math.min(threads, dim / 16);
        Parallel.forRange(blocks, (b0, b1) -> {
            for (int blk = b0; blk < b1; blk++) {
                int s0 = (int) ((long) dim * blk / blocks) & ~15;
                int s1 = blk + 1 == blocks ? dim : (int) ((long) dim * (blk + 1) / blocks) & ~15;
                if (s1 <= s0) continue;
                if (byRows) {
                    long aStart = transA ? s0 : (long) s0 * lda;
                    call(transA, transB, s1 - s0, n, k, alpha, a, aOff + 4 * aStart, lda, b, bOff, ldb,
                            beta, c, cOff + 4L * s0 * ldc, ldc);
                } else {
                    long bStart = transB ? (long) s0 * ldb : s0;
                    call(transA, transB, m, s1 - s0, k, alpha, a, aOff, lda, b, bOff + 4 * bStart, ldb,
                            beta, c, cOff + 4L * s0, ldc);
                }
            }
        });
    }

    private void call(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      MemorySegment a, long aByte, int lda, MemorySegment b, long bByte, int ldb,
                      float beta, MemorySegment c, long cByte, int ldc) {
        try {
            // BLAS leading dimensions must be >= 1 even for empty operands.
            sgemm.invokeExact(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS,
                    m, n, k, alpha, a.asSlice(aByte), Math.max(lda, 1), b.asSlice(bByte), Math.max(ldb, 1),
                    beta, c.asSlice(cByte), ldc);
        } catch (Throwable e) {
            throw new IllegalStateException("cblas_sgemm failed", e);
        }
    }

    @Override
    public String name() {
        return "blas";
    }
}
