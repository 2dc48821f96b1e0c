package dev.dsmoe.bench;

import dev.dsmoe.kernels.BlasGemm;
import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.kernels.Gemm;
import dev.dsmoe.kernels.JavaGemm;
import dev.dsmoe.kernels.Kernels;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Matmul;
import dev.dsmoe.kernels.MemoryProbe;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.kernels.TensorView;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * The kernel benchmark behind {@code ./dsmoe bench kernels}: GEMM GFLOP/s on training shapes for
 * every backend in one run, the machine's limits (a register-only FMA peak and STREAM-like
 * bandwidth probes) and mat-vec GB/s beside them, against GEMM at the same number of input rows
 * ({@code --matvec}: only the limits and that table, over more shapes and row counts).
 */
public final class KernelBenchmarks {

    /** One measured row. {@code value} is GFLOP/s or GB/s as {@code unit} says. */
    public record Row(String group, String name, String shape, String backend, double seconds,
                      double value, String unit, double ratio, String ratioTo) {}

    /** A GEMM case: C[m,n] = op(A)·op(B) with inner dimension k. */
    public record GemmShape(String form, int m, int k, int n) {
        boolean transA() { return form.equals("AT*B"); }
        boolean transB() { return form.equals("A*BT"); }
        String label() { return form + " " + m + "x" + k + "x" + n; }
    }

    /** Training shapes: tokens x d x 4d (up projection), tokens x 4d x d (down), tokens x d x V (LM head). */
    public static List<GemmShape> trainingShapes(boolean quick) {
        List<GemmShape> s = new ArrayList<>();
        int t = quick ? 512 : 2048;
        s.add(new GemmShape("A*B", t, 256, 1024));
        s.add(new GemmShape("A*B", t, 1024, 256));
        s.add(new GemmShape("A*B", t, 256, 8192));
        s.add(new GemmShape("A*BT", t, 256, 1024));   // forward through an [out,in] weight
        s.add(new GemmShape("AT*B", 1024, t, 256));   // weight gradient: dWᵀ = dYᵀ·X over tokens
        if (!quick) s.add(new GemmShape("A*B", 2048, 2048, 2048));
        return s;
    }

    private final int warmup;
    private final int repeats;
    private final boolean quick;
    private final Consumer<String> progress;

    public KernelBenchmarks(int warmup, int repeats, boolean quick, Consumer<String> progress) {
        this.warmup = warmup;
        this.repeats = repeats;
        this.quick = quick;
        this.progress = progress;
    }

    /** Runs everything; BLAS rows are skipped (with a row saying why) when OpenBLAS cannot load. */
    public List<Row> run() {
        List<Row> rows = new ArrayList<>();
        rows.add(fmaPeak());
        List<Row> probes = memoryProbes(true);
        Row read = probes.getFirst();
        rows.addAll(probes);

        List<Gemm> backends = new ArrayList<>();
        BlasGemm blas = null;
        try {
            blas = BlasGemm.load();
            backends.add(blas);
        } catch (UnsupportedOperationException | LinkageError e) {
            progress.accept("OpenBLAS unavailable, BLAS rows skipped: " + e.getMessage());
        }
        backends.add(new JavaGemm());
        // Both backends' code paths are JIT-compiled in the background while the first cases
        // run; a per-case warm-up of a few calls is not enough on 2 cores, so spend two seconds
        // on every backend before timing anything (without this the first case read 2x low).
        progress.accept("JIT warm-up");
        GemmShape w = trainingShapes(true).getFirst();
        for (Gemm g : backends) {
            long until = System.nanoTime() + (quick ? 500_000_000L : 2_000_000_000L);
            while (System.nanoTime() < until) gemm(g, w, Double.NaN, 0, 1);
        }
        for (GemmShape s : trainingShapes(quick)) {
            double blasValue = Double.NaN;
            for (Gemm g : backends) {
                Row r = gemm(g, s, blasValue);
                if (g == blas) blasValue = r.value();
                rows.add(r);
            }
            if (blas != null && !s.transA() && !s.transB()) {
                rows.add(jniArrayGemm(s, blasValue));
            }
        }
        rows.addAll(matVec(read.value(), matVecShapes(false), TABLE_M, List.of(Kernels.gemm())));
        return rows;
    }

    private static double flops(GemmShape s) {
        return 2.0 * s.m() * s.n() * s.k();
    }

    public Row gemm(Gemm g, GemmShape s, double blasValue) {
        return gemm(g, s, blasValue, warmup, repeats);
    }

    private Row gemm(Gemm g, GemmShape s, double blasValue, int warmup, int repeats) {
        progress.accept("gemm " + g.name() + " " + s.label());
        SplittableRandom r = new SplittableRandom(1);
        float[] a = fill(r, (long) s.m() * s.k());
        float[] b = fill(r, (long) s.k() * s.n());
        float[] c = new float[s.m() * s.n()];
        int lda = s.transA() ? s.m() : s.k();
        int ldb = s.transB() ? s.k() : s.n();
        double sec = Timing.medianSeconds(warmup, repeats, () ->
                g.sgemm(s.transA(), s.transB(), s.m(), s.n(), s.k(), 1f, a, 0, lda, b, 0, ldb, 0f, c, 0, s.n()));
        double gflops = flops(s) / sec / 1e9;
        boolean isBlas = g.name().equals("blas");
        return new Row("gemm", "sgemm", s.label(), g.name(), sec, gflops, "GFLOP/s",
                isBlas || Double.isNaN(blasValue) ? Double.NaN : gflops / blasValue, isBlas ? "" : "blas");
    }

    /** The same product through JavaCPP's float[] overload: JNI copies the arrays on every call. */
    private Row jniArrayGemm(GemmShape s, double blasValue) {
        progress.accept("gemm blas-jni-float[] " + s.label());
        SplittableRandom r = new SplittableRandom(1);
        float[] a = fill(r, (long) s.m() * s.k());
        float[] b = fill(r, (long) s.k() * s.n());
        float[] c = new float[s.m() * s.n()];
        double sec = Timing.medianSeconds(warmup, repeats, () ->
                org.bytedeco.openblas.global.openblas_nolapack.cblas_sgemm(101, 111, 111,
                        s.m(), s.n(), s.k(), 1f, a, s.k(), b, s.n(), 0f, c, s.n()));
        double gflops = flops(s) / sec / 1e9;
        return new Row("gemm", "sgemm", s.label(), "blas-jni-float[]", sec, gflops, "GFLOP/s",
                gflops / blasValue, "blas");
    }

    /** Register-only FMA throughput of the Vector API on all threads: the compute roof Java can reach. */
    public Row fmaPeak() {
        progress.accept("fma peak");
        int threads = Parallel.threads();
        int iters = quick ? 20_000_000 : 100_000_000;
        VectorSpecies<Float> sp = SPECIES;
        float[] sink = new float[threads * sp.length()];
        // Many short calls first, so the loop is compiled (with its vector intrinsics) before timing.
        for (int i = 0; i < 2000; i++) fmaLoop(1000, sink, 0);
        double sec = Timing.medianSeconds(1, Math.min(repeats, 5), () -> Parallel.forRange(threads, (t0, t1) -> {
            for (int t = t0; t < t1; t++) fmaLoop(iters / threads, sink, t * sp.length());
        }));
        // 12 independent accumulators x lanes x 2 flops per fma per iteration
        double gflops = 12.0 * sp.length() * 2 * iters / sec / 1e9;
        return new Row("limit", "fma peak (Vector API, " + sp.length() + " lanes)", threads + " threads", "java",
                sec, gflops, "GFLOP/s", Double.NaN, "");
    }

    // The species must be a constant for the Vector API to compile to SIMD instructions.
    private static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;

    private static void fmaLoop(int iters, float[] sink, int off) {
        VectorSpecies<Float> sp = SPECIES;
        FloatVector m = FloatVector.broadcast(sp, 0.999999f), a = FloatVector.broadcast(sp, 1e-7f);
        FloatVector x0 = FloatVector.broadcast(sp, 1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0,
                x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (int i = 0; i < iters; i++) {
            x0 = x0.fma(m, a); x1 = x1.fma(m, a); x2 = x2.fma(m, a); x3 = x3.fma(m, a);
            x4 = x4.fma(m, a); x5 = x5.fma(m, a); x6 = x6.fma(m, a); x7 = x7.fma(m, a);
            x8 = x8.fma(m, a); x9 = x9.fma(m, a); x10 = x10.fma(m, a); x11 = x11.fma(m, a);
        }
        x0.add(x1).add(x2).add(x3).add(x4).add(x5).add(x6).add(x7).add(x8).add(x9).add(x10).add(x11)
                .intoArray(sink, off);
    }

    /** The reference bandwidth probe: 4 read streams per thread over 1 GiB (the figure mat-vec GB/s is compared to). */
    public Row memoryRead() {
        return memoryProbes(false).getFirst();
    }

    /**
     * STREAM-like probes over four arrays of 256 MiB (64 MiB with --quick): a read of all four at
     * once (4 streams per thread; the reference), the same read one array at a time (1 stream per
     * thread, the probe before), copy and triad (bytes counted as STREAM does: read + written).
     */
    public List<Row> memoryProbes(boolean all) {
        progress.accept("memory probes");
        int n = quick ? (16 << 20) : (64 << 20);
        SplittableRandom r = new SplittableRandom(2);
        float[] a = fill(r, n), b = fill(r, n), c = fill(r, n), d = fill(r, n);
        String shape = (4L * n >> 20) + " MiB";
        List<Row> rows = new ArrayList<>();
        double sec = Timing.medianSeconds(warmup, repeats, () -> MemoryProbe.readSum(a, b, c, d));
        rows.add(new Row("limit", "memory read (4 streams)", "4 x " + shape, "java", sec, 16.0 * n / sec / 1e9, "GB/s",
                Double.NaN, ""));
        if (!all) return rows;
        double read = rows.getFirst().value();
        sec = Timing.medianSeconds(warmup, repeats, () -> {
            for (float[] v : new float[][] {a, b, c, d}) MemoryProbe.parallelSum(v);
        });
        rows.add(new Row("limit", "memory read (1 stream)", "4 x " + shape, "java", sec, 16.0 * n / sec / 1e9, "GB/s",
                16.0 * n / sec / 1e9 / read, "memory read"));
        sec = Timing.medianSeconds(warmup, repeats, () -> MemoryProbe.copy(a, b));
        rows.add(new Row("limit", "memory copy", shape, "java", sec, 8.0 * n / sec / 1e9, "GB/s",
                8.0 * n / sec / 1e9 / read, "memory read"));
        sec = Timing.medianSeconds(warmup, repeats, () -> MemoryProbe.triad(a, b, c, 0.5f));
        rows.add(new Row("limit", "memory triad", shape, "java", sec, 12.0 * n / sec / 1e9, "GB/s",
                12.0 * n / sec / 1e9 / read, "memory read"));
        return rows;
    }

    /** A weight shape of the mat-vec table. */
    public record MatShape(String label, int rows, int cols) {}

    /** [4096x4096], and dsmoe-1b's MLP expert (D_ffd 256, D_emb 2048): up [256x2048] and down [2048x256]. */
    public static List<MatShape> matVecShapes(boolean experts) {
        List<MatShape> s = new ArrayList<>();
        s.add(new MatShape("4096x4096", 4096, 4096));
        if (experts) {
            s.add(new MatShape("256x2048 (1b up)", 256, 2048));
            s.add(new MatShape("2048x256 (1b down)", 2048, 256));
        }
        return s;
    }

    /** Input rows of the mat-vec table in {@link #run}, and of the sweep ({@code bench kernels --matvec}). */
    public static final int[] TABLE_M = {1, 4, 16, 64}, SWEEP_M = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64};

    /** The machine limits and the whole mat-vec/GEMM sweep over M, every format, shape and GEMM backend. */
    public List<Row> matVecSweep() {
        List<Row> rows = new ArrayList<>();
        rows.add(fmaPeak());
        rows.addAll(memoryProbes(true));
        List<Gemm> backends = new ArrayList<>();
        try {
            backends.add(BlasGemm.load());
        } catch (UnsupportedOperationException | LinkageError e) {
            progress.accept("OpenBLAS unavailable, BLAS rows skipped: " + e.getMessage());
        }
        backends.add(new JavaGemm());
        rows.addAll(matVec(rows.get(1).value(), matVecShapes(true), SWEEP_M, backends));
        return rows;
    }

    /**
     * Mat-vec against GEMM at the same number of input rows M, over weight sets larger than the
     * caches (about 1 GiB in each format, 128 MiB with --quick), cycled so every pass comes from
     * DRAM; as the engine runs them: views made once, products through {@link Matmul}. Mat-vec
     * rows give GB/s of weights read (and their ratio to the read probe); GEMM rows (the format's
     * GEMM path: fp32 in place, bf16 and q8_0 unpacked per product) give GFLOP/s and their speed
     * relative to the mat-vec at the same M (above 1: GEMM is faster).
     */
    private List<Row> matVec(double readGbs, List<MatShape> shapes, int[] ms, List<Gemm> backends) {
        List<Row> rows = new ArrayList<>();
        int maxM = java.util.Arrays.stream(ms).max().orElse(1);
        Gemm before = Kernels.gemm();
        try {
            for (MatVec.DType dt : MatVec.DType.values()) {
                for (MatShape sh : shapes) {
                    int rowsW = sh.rows(), cols = sh.cols();
                    long target = quick ? (128L << 20) : (1L << 30);
                    int mats = (int) Math.max(1, (target + dt.bytes(rowsW, cols) - 1) / dt.bytes(rowsW, cols));
                    TensorView[] w = new TensorView[mats];
                    SplittableRandom r = new SplittableRandom(3);
                    progress.accept("mat-vec " + dt + " " + sh.label() + ": weights");
                    for (int i = 0; i < mats; i++) {
                        MemorySegment seg = dt == MatVec.DType.F32 ? MemorySegment.ofArray(fill(r, (long) rowsW * cols))
                                : dt.write(java.lang.foreign.Arena.ofAuto(), fill(r, (long) rowsW * cols), rowsW, cols);
                        w[i] = dt.view(seg, 0, rowsW, cols);
                    }
                    F32Tensor x = F32Tensor.of(fill(r, (long) maxM * cols), maxM, cols);
                    F32Tensor y = F32Tensor.of(new float[maxM * rowsW], maxM, rowsW);
                    String label = mats + " x [" + sh.label() + "]";
                    double bytes = (double) mats * dt.bytes(rowsW, cols);
                    for (int m : ms) {
                        progress.accept("mat-vec " + dt + " " + sh.label() + " m=" + m);
                        Matmul mv = Matmul.forInference(Integer.MAX_VALUE);
                        double sec = Timing.medianSeconds(warmup, repeats, () -> {
                            for (TensorView v : w) mv.forward(y, x, m, v, false);
                        });
                        double flops = 2.0 * m * rowsW * cols * mats, mvGf = flops / sec / 1e9;
                        rows.add(new Row("matvec", "mat-vec " + dt.name().toLowerCase(Locale.ROOT), label + ", m=" + m,
                                "java", sec, bytes / sec / 1e9, "GB/s", bytes / sec / 1e9 / readGbs, "memory read"));
                        for (Gemm g : backends) {
                            progress.accept("gemm " + g.name() + " " + dt + " " + sh.label() + " m=" + m);
                            Kernels.select(g.name().equals("blas") ? Kernels.Backend.BLAS : Kernels.Backend.JAVA);
                            Matmul gm = Matmul.forTraining();
                            double gs = Timing.medianSeconds(warmup, repeats, () -> {
                                for (TensorView v : w) gm.forward(y, x, m, v, false);
                            });
                            rows.add(new Row("matvec", "gemm " + dt.name().toLowerCase(Locale.ROOT), label + ", m=" + m,
                                    g.name(), gs, flops / gs / 1e9, "GFLOP/s", flops / gs / 1e9 / mvGf, "mat-vec"));
                        }
                    }
                }
            }
        } finally {
            Kernels.select(before.name().equals("blas") ? Kernels.Backend.BLAS : Kernels.Backend.JAVA);
        }
        return rows;
    }

    private static float[] fill(SplittableRandom r, long n) {
        if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("array too large: " + n);
        float[] a = new float[(int) n];
        for (int i = 0; i < a.length; i++) a[i] = (float) (r.nextDouble() - 0.5);
        return a;
    }
}
