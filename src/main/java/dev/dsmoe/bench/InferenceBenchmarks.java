package dev.dsmoe.bench;

import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.InferenceStats;
import dev.dsmoe.infer.KvCache;
import dev.dsmoe.infer.Sequence;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Matmul;
import dev.dsmoe.model.Init;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamLayout;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * Inference throughput of models under expert selections, measured together in one run (round
 * by round, {@link #runTogether}): prefill tokens/s (one prompt, batched) and single-stream
 * decode tokens/s (medians over repeats), the experts the decode steps activated, the weight
 * bytes one decoded token reads and the bandwidth that implies, and the decode speed relative to
 * the model's first selection.
 */
public final class InferenceBenchmarks {

    /** One (model, selection) measurement. */
    public record Row(String model, String selection, String dtype, int promptTokens, int decodeTokens,
                      double prefillTokensPerSecond, double decodeTokensPerSecond, double meanActiveAttention,
                      double meanActiveMlp, double activeHiddenPercent, double activeParamsPerToken,
                      double weightBytesPerToken, double decodeGBPerSecond, double decodeSpeedupToFirst) {}

    private final int prompt, decode, warmup, repeats;
    private final Consumer<String> progress;
    private int chunk = Engine.DEFAULT_CHUNK;
    private boolean profile;
    /** Real tokens to prefill and decode (teacher-forced), or null for random ones. */
    private int[] text;
    private final List<Profile> profiles = new ArrayList<>();

    /**
     * Where a decode step's time goes, from extra decode passes with the products timed
     * ({@link Matmul#startTiming()}; medians over the repeats): microseconds per token in all, in the weight products
     * (mat-vec and GEMM calls, their parallel dispatch included) and outside them (attention over
     * the cache, norms, RoPE, routing and selection, the residual adds, the engine's bookkeeping).
     */
    /**
     * Where a selection's time goes, medians over the repeats: µs per decoded token (step) and per
     * prompt token (prefill), each split into weight products (every {@link Matmul} call: projections,
     * experts, routers, head) and the rest (attention over the cache, norms, routing, grouping), and
     * by the layer's {@link Engine.Phase}s (keys: {@link Engine.Phase#key}, in layer order;
     * what the phases leave out, embedding lookup and bookkeeping, is {@code stepMicros} less their sum).
     */
    public record Profile(String model, String selection, double stepMicros, double productMicros,
                          double prefillMicros, double prefillProductMicros, Map<String, Double> stepPhaseMicros,
                          Map<String, Double> prefillPhaseMicros) {}

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

    /** Prompt tokens per prefill step (default {@link Engine#DEFAULT_CHUNK}); returns this. */
    public InferenceBenchmarks chunk(int tokens) {
        if (tokens < 1) throw new IllegalArgumentException("--chunk must be >= 1, got " + tokens);
        this.chunk = tokens;
        return this;
    }

    /** Also time the products of extra decode passes per selection (--repeats of them, medians; {@link #profiles()}); returns this. */
    public InferenceBenchmarks profile(boolean on) {
        this.profile = on;
        return this;
    }

    /**
     * Prompt and decoded tokens from {@code tokens} (its first prompt + decode, teacher-forced;
     * in batched runs sequence i reads the window after sequence i-1's, wrapping round) instead
     * of random ids: a threshold selection keeps as many experts per token as real text makes
     * it, where random ids spread the router's scores (the quickstart's DS-MoE at ε 0.48 kept 10.2
     * of 16 MLP experts a decoded token on random ids against 6.9 on its validation text, and
     * decoded 9 % slower). Null: random ids (the presets' random weights have no text). Returns this.
     */
    public InferenceBenchmarks text(int[] tokens) {
        if (tokens != null && tokens.length < prompt + decode) {
            throw new IllegalArgumentException("the text has " + tokens.length + " tokens, a run needs " + (prompt + decode));
        }
        this.text = tokens;
        return this;
    }

    /** Sequence {@code i}'s prompt and decoded tokens ({@link #text}, else random from {@code r}) into the two arrays. */
    private void tokens(int i, SplittableRandom r, int vocab, int[] promptTokens, int[] next) {
        if (text == null) {
            for (int j = 0; j < promptTokens.length; j++) promptTokens[j] = r.nextInt(vocab);
            for (int j = 0; j < next.length; j++) next[j] = r.nextInt(vocab);
            return;
        }
        int n = prompt + decode, windows = text.length - n + 1, at = (int) ((long) i * n % windows);
        for (int j = 0; j < n; j++) {
            int t = text[at + j];
            if (t < 0 || t >= vocab) throw new IllegalArgumentException("token " + t + " of the text is outside the model's vocabulary of " + vocab);
            if (j < prompt) promptTokens[j] = t;
            else next[j - prompt] = t;
        }
    }

    /** The profiles of the runs so far, with {@link #profile(boolean)} on. */
    public List<Profile> profiles() {
        return profiles;
    }

    /**
     * A preset with random weights (Init, seed 1), in {@code dtype}, every weight in native memory
     * as a loaded checkpoint's are (fp32 ones copied there), so the benchmark runs the kernels a
     * user's model runs.
     */
    public static InferenceModel randomModel(String preset, MatVec.DType dtype) {
        ParamLayout layout = ParamLayout.of(ModelPresets.get(preset));
        float[] p = layout.newBuffer();
        Init.initialize(layout, p, 1);
        return InferenceModel.fromParams(layout, p, dtype, true);
    }

    /** One model under one selection, to time: the rows' model name, the model and the selection's text. */
    public record Subject(String name, InferenceModel model, String selection) {}

    /** One model under several selections, timed together ({@link #runTogether}). */
    public List<Row> run(String name, InferenceModel model, List<String> selections) {
        return runTogether(subjects(name, model, selections));
    }

    private static List<Subject> subjects(String name, InferenceModel model, List<String> selections) {
        return selections.stream().map(s -> new Subject(name, model, s)).toList();
    }

    /** Every subject's model holds a run's prompt and decoded tokens. */
    private void checkContext(List<Subject> subjects) {
        for (Subject s : subjects) {
            int context = s.model().config().maxPositions();
            if (prompt + decode > context) {
                throw new IllegalArgumentException("prompt (" + prompt + ") + decode (" + decode + ") tokens exceed the context of "
                        + context + " (" + s.name() + ")");
            }
        }
    }

    /**
     * Every subject timed round by round: each round one timed prefill of the prompt and one timed
     * decode after it, for every subject in turn, so that a machine that slows down mid-way
     * slows them all alike and the ratios between rows (DS-MoE against Dense) are of the same
     * seconds; rounds of all subjects timed apart, model after model, were minutes apart, and a
     * shared machine drifts by tens of percent in that time. Untimed warm-up rounds come first
     * ({@link Timing.WarmUp}: at least {@code warmup} rounds, 1 s, and until the JIT is quiet).
     * With {@link #profile} on, extra profiled runs of each subject follow. "Decode vs first" is
     * a row's decode speed over its model's first row.
     */
    public List<Row> runTogether(List<Subject> subjects) {
        checkContext(subjects);
        int n = subjects.size();
        Engine[] engines = new Engine[n];
        int[][] promptTokens = new int[n][], next = new int[n][];
        for (int i = 0; i < n; i++) {
            Subject s = subjects.get(i);
            ModelConfig c = s.model().config();
            engines[i] = new Engine(s.model(), ExpertSelection.parse(s.selection(), c), prompt + decode, chunk);
            promptTokens[i] = new int[prompt];
            next[i] = new int[decode];
            tokens(0, new SplittableRandom(2), c.vocabSize(), promptTokens[i], next[i]);
        }
        double[][] prefillSec = new double[n][repeats], decodeSec = new double[n][repeats];
        InferenceStats[] stats = new InferenceStats[n];
        Timing.WarmUp warm = new Timing.WarmUp(warmup);
        int round = 0;
        do {
            round++;
            for (int i = 0; i < n; i++) once(subjects.get(i), engines[i], promptTokens[i], next[i], "warm-up " + round);
        } while (warm.another());
        for (int r = 0; r < repeats; r++) {
            for (int i = 0; i < n; i++) {
                double[] t = once(subjects.get(i), engines[i], promptTokens[i], next[i], (r + 1) + "/" + repeats);
                prefillSec[i][r] = t[0];
                decodeSec[i][r] = t[1];
                stats[i] = engines[i].stats();
            }
        }
        if (profile) {
            for (int i = 0; i < n; i++) profile(subjects.get(i), engines[i], promptTokens[i], next[i]);
        }
        List<Row> rows = new ArrayList<>();
        Map<InferenceModel, Double> first = new IdentityHashMap<>(); // each model's first row's decode speed
        for (int i = 0; i < n; i++) {
            Subject s = subjects.get(i);
            double decodeTps = decode / Timing.median(decodeSec[i]);
            double bytes = s.model().weightBytesPerToken(stats[i].meanActiveAttention(), stats[i].meanActiveMlp());
            double firstTps = first.computeIfAbsent(s.model(), m -> decodeTps);
            rows.add(new Row(s.name(), engines[i].selection().toString(), s.model().dtype().name().toLowerCase(Locale.ROOT), prompt,
                    decode, prompt / Timing.median(prefillSec[i]), decodeTps, stats[i].meanActiveAttention(),
                    stats[i].meanActiveMlp(), stats[i].activeHiddenPercent(), stats[i].activeParamsPerToken(), bytes,
                    bytes * decodeTps / 1e9, decodeTps / firstTps));
        }
        return rows;
    }

    /** One run of a subject: the prompt's prefill, then the decode after it; both seconds (the statistics reset between). */
    private double[] once(Subject s, Engine e, int[] promptTokens, int[] next, String label) {
        progress.accept(s.name() + " " + e.selection() + ": prefill and decode " + label);
        long t0 = System.nanoTime();
        e.prefill(promptTokens);
        long t1 = System.nanoTime();
        e.resetStats();
        long t2 = System.nanoTime();
        for (int t = 0; t < decode; t++) e.decode(next[t]);
        long t3 = System.nanoTime();
        return new double[] {(t1 - t0) / 1e9, (t3 - t2) / 1e9};
    }

    /** {@link #repeats} profiled runs of a subject (products and phases timed), their medians into {@link #profiles()}. */
    private void profile(Subject s, Engine e, int[] promptTokens, int[] next) {
        double[] all = new double[repeats], inProducts = new double[repeats];
        double[] pre = new double[repeats], preProducts = new double[repeats];
        int phases = Engine.Phase.values().length;
        double[][] stepPhases = new double[phases][repeats], prePhases = new double[phases][repeats];
        for (int i = 0; i < repeats; i++) {
            progress.accept(s.name() + " " + e.selection() + ": profiled prefill and decode " + (i + 1) + "/" + repeats);
            Matmul.startTiming();
            e.timePhases(true);
            long t0 = System.nanoTime();
            e.prefill(promptTokens);
            pre[i] = (System.nanoTime() - t0) / 1e3 / prompt;
            preProducts[i] = Matmul.stopTiming() / 1e3 / prompt;
            perToken(e.phaseNanos(), prompt, prePhases, i);
            Matmul.startTiming();
            e.timePhases(true);
            t0 = System.nanoTime();
            for (int t = 0; t < decode; t++) e.decode(next[t]);
            all[i] = (System.nanoTime() - t0) / 1e3 / decode;
            inProducts[i] = Matmul.stopTiming() / 1e3 / decode;
            perToken(e.phaseNanos(), decode, stepPhases, i);
            e.timePhases(false);
        }
        profiles.add(new Profile(s.name(), e.selection().toString(), Timing.median(all), Timing.median(inProducts), Timing.median(pre),
                Timing.median(preProducts), phaseMedians(stepPhases), phaseMedians(prePhases)));
    }

    /** Repeat i's µs per token of each phase ({@code nanos} by ordinal) into {@code byPhase[phase][i]}. */
    private static void perToken(long[] nanos, int tokens, double[][] byPhase, int i) {
        for (int k = 0; k < nanos.length; k++) byPhase[k][i] = nanos[k] / 1e3 / tokens;
    }

    /** Per phase (by ordinal), the median over the repeats, keyed by {@link Engine.Phase#key}. */
    private static Map<String, Double> phaseMedians(double[][] byPhase) {
        Map<String, Double> m = new LinkedHashMap<>();
        for (Engine.Phase p : Engine.Phase.values()) m.put(p.key(), Timing.median(byPhase[p.ordinal()]));
        return m;
    }

    /** One (model, selection, batch size) measurement of batched decode. */
    public record BatchRow(String model, String selection, String dtype, int batch, int promptTokens, int decodeTokens,
                           double aggregateTokensPerSecond, double perSequenceTokensPerSecond, double meanActiveAttention,
                           double meanActiveMlp, double activeHiddenPercent, double speedupToFirst) {}

    /**
     * Batched decode of one model under several selections ({@link #runBatchedTogether}).
     */
    public List<BatchRow> runBatched(String name, InferenceModel model, List<String> selections, List<Integer> batches) {
        return runBatchedTogether(subjects(name, model, selections), batches);
    }

    /**
     * Batched decode: for each batch size B, B sequences (each its own prompt, random or from
     * {@link #text}, prefilled first) decode {@code decode} tokens together, one step per token for
     * all of them; the median over repeats of the decode time gives the aggregate tokens/s (B tokens
     * per step) and each sequence's. At each B every subject runs round by round (one run of each
     * per round, after warm-up rounds), so the ratios between models are of the same seconds. Rows
     * come model by model (in the order the subjects first name them), then by B, then by
     * selection; {@code speedupToFirst} compares with the model's first selection at the same B.
     */
    public List<BatchRow> runBatchedTogether(List<Subject> subjects, List<Integer> batches) {
        checkContext(subjects);
        int n = subjects.size();
        for (int b : batches) {
            if (b < 1) throw new IllegalArgumentException("batch sizes must be >= 1, got " + b);
        }
        ExpertSelection[] sel = new ExpertSelection[n];
        for (int i = 0; i < n; i++) sel[i] = ExpertSelection.parse(subjects.get(i).selection(), subjects.get(i).model().config());
        double[][] aggregate = new double[batches.size()][n];
        InferenceStats[][] stats = new InferenceStats[batches.size()][n];
        for (int bi = 0; bi < batches.size(); bi++) {
            int b = batches.get(bi), chunk = Math.max(b, this.chunk);
            Map<InferenceModel, Engine> engines = new IdentityHashMap<>();
            int[][][] prompts = new int[n][][], next = new int[n][][];
            for (int i = 0; i < n; i++) {
                InferenceModel m = subjects.get(i).model();
                engines.computeIfAbsent(m, x -> Engine.batched(x, chunk, prompt + decode,
                        b * ((prompt + decode + KvCache.DEFAULT_BLOCK - 1) / KvCache.DEFAULT_BLOCK + 1)));
                SplittableRandom r = new SplittableRandom(3);
                prompts[i] = new int[b][prompt];
                next[i] = new int[decode][b];
                int[] own = new int[decode];
                for (int q = 0; q < b; q++) {
                    tokens(q, r, m.config().vocabSize(), prompts[i][q], own);
                    for (int t = 0; t < decode; t++) next[i][t][q] = own[t];
                }
            }
            double[][] sec = new double[n][repeats];
            Timing.WarmUp warm = new Timing.WarmUp(warmup);
            int round = 0;
            do {
                round++;
                for (int i = 0; i < n; i++) {
                    batchedRun(subjects.get(i), engines.get(subjects.get(i).model()), sel[i], b, chunk, prompts[i], next[i],
                            "warm-up " + round);
                }
            } while (warm.another());
            for (int r = 0; r < repeats; r++) {
                for (int i = 0; i < n; i++) {
                    Engine e = engines.get(subjects.get(i).model());
                    sec[i][r] = batchedRun(subjects.get(i), e, sel[i], b, chunk, prompts[i], next[i], (r + 1) + "/" + repeats);
                    stats[bi][i] = e.stats();
                }
            }
            for (int i = 0; i < n; i++) aggregate[bi][i] = b * decode / Timing.median(sec[i]);
        }
        List<BatchRow> rows = new ArrayList<>();
        List<InferenceModel> models = new ArrayList<>();
        for (Subject s : subjects) {
            if (models.stream().noneMatch(m -> m == s.model())) models.add(s.model());
        }
        for (InferenceModel m : models) {
            for (int bi = 0; bi < batches.size(); bi++) {
                double first = Double.NaN;
                for (int i = 0; i < n; i++) {
                    Subject s = subjects.get(i);
                    if (s.model() != m) continue;
                    if (Double.isNaN(first)) first = aggregate[bi][i];
                    int b = batches.get(bi);
                    InferenceStats st = stats[bi][i];
                    rows.add(new BatchRow(s.name(), sel[i].toString(), m.dtype().name().toLowerCase(Locale.ROOT), b, prompt, decode,
                            aggregate[bi][i], aggregate[bi][i] / b, st.meanActiveAttention(), st.meanActiveMlp(),
                            st.activeHiddenPercent(), aggregate[bi][i] / first));
                }
            }
        }
        return rows;
    }

    /** One batched run: B sequences opened and prefilled (untimed), then {@code decode} steps of all of them; the steps' seconds. */
    private double batchedRun(Subject s, Engine e, ExpertSelection sel, int b, int chunk, int[][] prompts, int[][] next, String label) {
        progress.accept(s.name() + " " + sel + " batch " + b + ": " + label);
        Sequence[] seqs = new Sequence[b];
        for (int i = 0; i < b; i++) {
            seqs[i] = e.open(sel);
            for (int at = 0; at < prompt; at += chunk) {
                e.clearStep();
                e.add(seqs[i], prompts[i], at, Math.min(chunk, prompt - at), Engine.Logits.NONE);
                e.run();
            }
        }
        e.resetStats();
        long t0 = System.nanoTime();
        for (int t = 0; t < decode; t++) {
            e.clearStep();
            for (int i = 0; i < b; i++) e.add(seqs[i], next[t], i, 1, Engine.Logits.LAST);
            e.run();
        }
        double dt = (System.nanoTime() - t0) / 1e9;
        for (Sequence q : seqs) e.close(q);
        return dt;
    }
}
