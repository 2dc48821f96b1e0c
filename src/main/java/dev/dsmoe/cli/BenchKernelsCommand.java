package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.bench.KernelBenchmarks;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ./dsmoe bench kernels}: GEMM on both backends, the machine's limits, mat-vec. */
@Command(name = "kernels", mixinStandardHelpOptions = true,
        description = {"GEMM GFLOP/s on training shapes for both backends (OpenBLAS and pure Java) in one run,",
                "beside a register-only FMA peak, STREAM-like memory probes and mat-vec GB/s (fp32, bf16, q8_0)",
                "against GEMM at the same number of input rows.",
                "Medians over --repeats after --warmup runs. With --jmh, runs the JMH GEMM benchmark instead."})
final class BenchKernelsCommand implements Callable<Integer> {

    @Option(names = "--repeats", defaultValue = "7", description = "Timed repeats per case (median reported). Default: ${DEFAULT-VALUE}.")
    int repeats;

    @Option(names = "--warmup", defaultValue = "3", description = "Untimed warm-up runs per case, at least; the warm-up also lasts at least 1 s and until the JIT is quiet (at most 30 s). Default: ${DEFAULT-VALUE}.")
    int warmup;

    @Option(names = "--quick", description = "Smaller shapes and buffers (a smoke run, not for the record).")
    boolean quick;

    @Option(names = "--json", description = "Print one JSON object per row instead of the table.")
    boolean json;

    @Option(names = "--matvec", description = {"Only the machine limits and the mat-vec table against GEMM: every format,",
            "[4096x4096] and dsmoe-1b's expert shapes, M = 1 to 64 input rows, both GEMM backends."})
    boolean matVec;

    @Option(names = "--jmh", description = "Run the JMH benchmark (dev.dsmoe.bench.GemmJmh) with its own statistics.")
    boolean jmh;

    @Override
    public Integer call() throws Exception {
        if (repeats < 1 || warmup < 0) throw new IllegalArgumentException("--repeats must be >= 1 and --warmup >= 0");
        if (jmh) {
            return JmhLauncher.run("dev.dsmoe.bench.GemmJmh", quick);
        }
        KernelBenchmarks bench = new KernelBenchmarks(warmup, repeats, quick,
                json || !Terminal.isInteractive() ? s -> { } : s -> Terminal.status("measuring " + s + " ..."));
        List<KernelBenchmarks.Row> rows = matVec ? bench.matVecSweep() : bench.run();
        Terminal.clearStatus();
        if (json) {
            ObjectMapper om = new ObjectMapper();
            for (KernelBenchmarks.Row r : rows) System.out.println(om.writeValueAsString(r));
            return 0;
        }
        System.out.printf(Locale.ROOT, "threads: %d, java %s, %s%n", ComputeOptions.threads(), Runtime.version(),
                System.getenv("OPENBLAS_CORETYPE") == null ? "OPENBLAS_CORETYPE unset"
                        : "OPENBLAS_CORETYPE=" + System.getenv("OPENBLAS_CORETYPE"));
        System.out.printf(Locale.ROOT, "| %-8s | %-26s | %-24s | %-16s | %10s | %12s | %-18s |%n",
                "group", "kernel", "shape", "backend", "median ms", "rate", "ratio");
        System.out.println("|----------|----------------------------|--------------------------|------------------|-----------:|-------------:|--------------------|");
        for (KernelBenchmarks.Row r : rows) {
            String ratio = Double.isNaN(r.ratio()) ? "" : String.format(Locale.ROOT, "%.2f x %s", r.ratio(), r.ratioTo());
            System.out.printf(Locale.ROOT, "| %-8s | %-26s | %-24s | %-16s | %10.2f | %7.1f %-5s| %-18s |%n",
                    r.group(), r.name(), r.shape(), r.backend(), r.seconds() * 1e3, r.value(), r.unit().replace("GFLOP/s", "GF/s"), ratio);
        }
        return 0;
    }
}
