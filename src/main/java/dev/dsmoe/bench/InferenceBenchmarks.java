package dev.dsmoe.bench;

import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.InferenceStats;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.Init;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * Inference throughput of one model under several expert selections, measured in one run:
 * prefill tokens/s (one prompt, batched) and single-stream decode tokens/s (medians over
 * repeats), the experts the decode steps activated, the weight bytes one decoded token reads
 * and the bandwidth that implies, and the decode speed relative to the first selection.
 */
public final class InferenceBenchmarks {

    /** One (model, selection) measurement. */
    public record Row(String model, String selection, String dtype, int promptTokens, int decodeTokens,
                      double prefillTokensPerSecond, double decodeTokensPerSecond, double meanActiveAttention,
                      double meanActiveMlp, double activeHiddenPercent, double activeParamsPerToken,
                      double weightBytesPerToken, double decodeGBPerSecond, double decodeSpeedupToFirst) {}

    private final int prompt, decode, warmup, repeats;
    private final Consumer<String> progress;

    public InferenceBenchmarks(int prompt, int decode, int warmup, int repeats, Consumer<String> progress) {
        if (prompt < 1 || decode < 1 || warmup < 0 || repeats < 1) {
            throw new IllegalArgumentException("prompt, decode and repeats must be >= 1, warmup >= 0");
        }
        this.prompt = prompt;
        this.decode = decode;
        this.warmup = warmup;
        this.repeats = repeats;
        this.progress = progress;
    }

    /** A preset with random weights (Init, seed 1), in {@code dtype}. */
    public static InferenceModel randomModel(String preset, MatVec.DType dtype) {
        ParamLayout layout = ParamLayout.of(ModelPresets.get(preset));
        float[] p = layout.newBuffer();
        Init.initialize(layout, p, 1);
        return InferenceModel.fromParams(layout, p, dtype);
    }

    public List<Row> run(String name, InferenceModel model, List<String> selections) {
        ModelConfig c = model.config();
        if (prompt + decode > c.maxPositions()) {
            throw new IllegalArgumentException("prompt (" + prompt + ") + decode (" + decode
                    + ") tokens exceed the context of " + c.maxPositions());
        }
        SplittableRandom r = new SplittableRandom(2);
        int[] promptTokens = new int[prompt], next = new int[decode];
        for (int i = 0; i < prompt; i++) promptTokens[i] = r.nextInt(c.vocabSize());
        for (int i = 0; i < decode; i++) next[i] = r.nextInt(c.vocabSize());
        List<Row> rows = new ArrayList<>();
        for (String s : selections) {
            ExpertSelection sel = ExpertSelection.parse(s, c);
            Engine e = new Engine(model, sel, prompt + decode, Engine.DEFAULT_CHUNK);
            int[] step = {0};
            int total = warmup + repeats;
            double prefillSec = Timing.medianSeconds(warmup, repeats, () -> {
                progress.accept(name + " " + sel + ": prefill " + (++step[0]) + "/" + total);
                e.prefill(promptTokens);
            });
            step[0] = 0;
            double[] decodeSec = new double[repeats];
            InferenceStats stats = null;
            for (int i = 0; i < warmup + repeats; i++) {
                progress.accept(name + " " + sel + ": decode " + (i + 1) + "/" + total);
                e.prefill(promptTokens);
                e.resetStats();
                long t0 = System.nanoTime();
                for (int t = 0; t < decode; t++) e.decode(next[t]);
                double sec = (System.nanoTime() - t0) / 1e9;
                if (i >= warmup) decodeSec[i - warmup] = sec;
                stats = e.stats();
            }
            double dSec = median(decodeSec);
            double decodeTps = decode / dSec;
            double bytes = model.weightBytesPerToken(stats.meanActiveAttention(), stats.meanActiveMlp());
            double first = rows.isEmpty() ? decodeTps : rows.get(0).decodeTokensPerSecond();
            rows.add(new Row(name, sel.toString(), model.dtype().name().toLowerCase(Locale.ROOT), prompt, decode,
                    prompt / prefillSec, decodeTps, stats.meanActiveAttention(), stats.meanActiveMlp(),
                    stats.activeHiddenPercent(), stats.activeParamsPerToken(), bytes, bytes * decodeTps / 1e9,
                    decodeTps / first));
        }
        return rows;
    }

    private static double median(double[] a) {
        double[] t = a.clone();
        Arrays.sort(t);
        return t.length % 2 == 1 ? t[t.length / 2] : 0.5 * (t[t.length / 2 - 1] + t[t.length / 2]);
    }
}
