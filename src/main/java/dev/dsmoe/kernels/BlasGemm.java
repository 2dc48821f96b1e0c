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
        g.setThreads(Parallel.threads());
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

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, float[] a, int aOff, int lda,
                      float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (m == 0 || n == 0) return;
        // BLAS leading dimensions must be >= 1 even for empty operands.
        lda = Math.max(lda, 1);
        ldb = Math.max(ldb, 1);
        try {
            sgemm.invokeExact(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS,
                    m, n, k, alpha,
                    MemorySegment.ofArray(a).asSlice(4L * aOff), lda,
                    MemorySegment.ofArray(b).asSlice(4L * bOff), ldb,
                    beta, MemorySegment.ofArray(c).asSlice(4L * cOff), ldc);
        } catch (Throwable e) {
            throw new IllegalStateException("cblas_sgemm failed", e);
        }
    }

    /**
     * The same product over memory segments: heap arrays wrapped with
     * {@code MemorySegment.ofArray}, or native memory such as a memory-mapped checkpoint tensor
     * (read in place, no copy). Each segment starts at its matrix's first element; fp32,
     * native byte order (little-endian on every platform this engine runs on).
     */
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, MemorySegment a, int lda, MemorySegment b, int ldb,
                      float beta, MemorySegment c, int ldc) {
        if (m < 0 || n < 0 || k < 0) {
            throw new IllegalArgumentException("gemm sizes must be >= 0: m=" + m + " n=" + n + " k=" + k);
        }
        checkSegment("A", a, lda, transA ? k : m, transA ? m : k);
        checkSegment("B", b, ldb, transB ? n : k, transB ? k : n);
        checkSegment("C", c, ldc, m, n);
        if (m == 0 || n == 0) return;
        try {
            sgemm.invokeExact(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS,
                    m, n, k, alpha, a, Math.max(lda, 1), b, Math.max(ldb, 1), beta, c, ldc);
        } catch (Throwable e) {
            throw new IllegalStateException("cblas_sgemm failed", e);
        }
    }

    private static void checkSegment(String name, MemorySegment s, int ld, int rows, int cols) {
        if (rows == 0 || cols == 0) return;
        if (ld < cols) {
            throw new IllegalArgumentException("gemm: leading dimension of " + name + " (" + ld
                    + ") is smaller than its column count (" + cols + ")");
        }
        long bytes = 4L * ((long) (rows - 1) * ld + cols);
        if (bytes > s.byteSize()) {
            throw new IllegalArgumentException("gemm: " + name + " [" + rows + " x " + cols + ", ld " + ld
                    + "] needs " + bytes + " bytes, its segment has " + s.byteSize());
        }
    }

    @Override
    public String name() {
        return "blas";
    }
}
