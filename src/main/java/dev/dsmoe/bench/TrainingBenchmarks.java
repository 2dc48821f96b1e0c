package dev.dsmoe.bench;

import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamCounts;
import dev.dsmoe.model.Transformer;
import dev.dsmoe.train.AdamWOptimizer;
import dev.dsmoe.train.StepTiming;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;

/**
 * Training-step throughput: forward + backward + AdamW (with clipping) of each preset on random
 * tokens, medians over timed steps, the ratio to the first (Dense) preset measured in the same run.
 */
public final class TrainingBenchmarks {

    /** One preset's figures. GFLOP/s counts 6·(non-embedding + output-projection) params per token plus attention. */
    public record Row(String preset, long params, int batch, int seqLen, double stepSeconds, double tokensPerSecond,
                      double ratioToFirst, double gflops, long peakHeapBytes, long arenaBytes) {}

    private final int batch, seqLen, warmup, steps;
    private final Consumer<String> progress;

    public TrainingBenchmarks(int batch, int seqLen, int warmup, int steps, Consumer<String> progress) {
        this.batch = batch;
        this.seqLen = seqLen;
        this.warmup = warmup;
        this.steps = steps;
        this.progress = progress;
    }

    public List<Row> run(List<String> presets) {
        List<Row> rows = new ArrayList<>();
        // Untimed: one pass of every preset's warm-up first, so the JIT has compiled the shared
        // kernels before the first preset is timed (otherwise the first row pays for it).
        new TrainingBenchmarks(batch, seqLen, 0, Math.max(3, warmup), s -> progress.accept("JIT warm-up, " + s))
                .measure(presets);
        rows.addAll(measure(presets));
        return rows;
    }

    private List<Row> measure(List<String> presets) {
        List<Row> rows = new ArrayList<>();
        for (String name : presets) {
            ModelConfig c = ModelPresets.get(name);
            StepTiming timing = StepTiming.randomModel(c, batch, seqLen, 2);
            Transformer model = timing.model();
            AdamWOptimizer opt = AdamWOptimizer.standard(model.layout());
            int n = batch * seqLen;
            resetPeaks();
            int[] done = {0};
            double sec = Timing.medianSeconds(warmup, steps, () -> {
                progress.accept(name + " step " + (++done[0]) + "/" + (warmup + steps));
                Arrays.fill(model.grads(), 0f);
                timing.pass();
                opt.step(model.params(), model.grads(), 3e-4f, 1.0);
            });
            double tps = n / sec;
            double flopsPerToken = 6.0 * (ParamCounts.of(c).nonEmbedding() + (long) c.vocabSize() * c.dEmb())
                    + 6.0 * c.numLayers() * c.totalQueryHeads() * c.dAtt() * seqLen; // causal QKᵀ and PV, fwd+bwd
            double ratio = rows.isEmpty() ? 1.0 : tps / rows.getFirst().tokensPerSecond();
            rows.add(new Row(name, model.layout().totalSize(), batch, seqLen, sec, tps, ratio, flopsPerToken * tps / 1e9,
                    peakHeap(), model.activations(batch, seqLen).bytes()));
        }
        return rows;
    }

    private static void resetPeaks() {
        System.gc();
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP) pool.resetPeakUsage();
        }
    }

    private static long peakHeap() {
        long sum = 0;
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP) sum += pool.getPeakUsage().getUsed();
        }
        return sum;
    }
}
