package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.bench.TrainingBenchmarks;
import dev.dsmoe.model.ModelPresets;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ./dsmoe bench train}: training-step tokens/s per model family, with ratios to the first. */
@Command(name = "train", mixinStandardHelpOptions = true,
        description = {"Training throughput: forward + backward + AdamW step of each preset on random tokens,",
                "median over --steps after --warmup, tokens/s and the ratio to the first preset (Dense)."})
final class BenchTrainCommand implements Callable<Integer> {

    @Option(names = "--presets", split = ",", defaultValue = "dense-small,smoe-small,dsmoe-small",
            description = "Comma-separated presets; the first is the ratio's reference. Default: ${DEFAULT-VALUE}.")
    List<String> presets;

    @Option(names = "--batch", defaultValue = "8", description = "Sequences per step. Default: ${DEFAULT-VALUE}.")
    int batch;

    @Option(names = "--seq", defaultValue = "256", description = "Tokens per sequence. Default: ${DEFAULT-VALUE}.")
    int seq;

    @Option(names = "--steps", defaultValue = "5", description = "Timed steps (median reported). Default: ${DEFAULT-VALUE}.")
    int steps;

    @Option(names = "--warmup", defaultValue = "2", description = "Untimed steps first. Default: ${DEFAULT-VALUE}.")
    int warmup;

    @Option(names = "--json", description = "One JSON object per preset instead of the table.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        if (batch < 1 || seq < 1 || steps < 1 || warmup < 0) {
            throw new IllegalArgumentException("--batch, --seq and --steps must be >= 1, --warmup >= 0");
        }
        TrainingBenchmarks b = new TrainingBenchmarks(batch, seq, warmup, steps,
                json ? s -> { } : s -> Terminal.status("training " + s));
        for (String p : presets) MemoryCheck.training(ModelPresets.get(p), false, batch, seq);
        List<TrainingBenchmarks.Row> rows = b.run(presets);
        Terminal.clearStatus();
        if (json) {
            ObjectMapper om = new ObjectMapper();
            for (TrainingBenchmarks.Row r : rows) System.out.println(om.writeValueAsString(r));
            return 0;
        }
        System.out.printf(Locale.ROOT, "batch %d x %d tokens, %d threads, kernels %s%n", batch, seq,
                ComputeOptions.threads(), ComputeOptions.kernels());
        System.out.println("| preset | params | step ms (median) | tokens/s | vs first | GFLOP/s | peak heap MiB | arena MiB |");
        System.out.println("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (TrainingBenchmarks.Row r : rows) {
            System.out.printf(Locale.ROOT, "| %s | %.2fM | %.0f | %.0f | %.2f | %.1f | %d | %d |%n", r.preset(),
                    r.params() / 1e6, r.stepSeconds() * 1e3, r.tokensPerSecond(), r.ratioToFirst(), r.gflops(),
                    r.peakHeapBytes() >> 20, r.arenaBytes() >> 20);
        }
        return 0;
    }
}
