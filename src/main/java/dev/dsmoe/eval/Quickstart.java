package dev.dsmoe.eval;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.dsmoe.bench.InferenceBenchmarks;
import dev.dsmoe.data.CorpusPreparer;
import dev.dsmoe.data.TokenDataset;
import dev.dsmoe.eval.QuickstartResults.Evaluation;
import dev.dsmoe.eval.QuickstartResults.Measurement;
import dev.dsmoe.eval.QuickstartResults.Report;
import dev.dsmoe.eval.QuickstartResults.Results;
import dev.dsmoe.eval.QuickstartResults.Row;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.Generator;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.Sampler;
import dev.dsmoe.io.AtomicFiles;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.tokenizer.Tokenizer;
import dev.dsmoe.train.BatchSource;
import dev.dsmoe.train.StepTiming;
import dev.dsmoe.train.TrainData;
import dev.dsmoe.train.Trainer;
import dev.dsmoe.train.TrainerState;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import static dev.dsmoe.eval.QuickstartResults.table;

/**
 * The quickstart: the paper's comparison end to end on one corpus, as a pipeline of stages with
 * typed results. {@link #prepare} tokenizes the corpus; {@link #train} trains size-matched Dense,
 * SMoE and DS-MoE models for the same number of steps, fitted to the time budget; {@link #evaluate}
 * scores each under its strategies (validation perplexity, the zero-shot code task, active
 * parameters) and {@link #time}s its inference; {@link #decodeTogether} times every row's decode again,
 * all rows round by round (same-time ratios to Dense); {@link #sweep} runs DS-MoE's threshold sweep
 * (perplexity, and decode speed timed at each ε); {@link #report} writes results.md (with the
 * sweep's table), results.json and loss_curves.png.
 *
 * <p>Every stage is kept in the run directory and reused by the next run: the prepared data
 * (preparing again is a no-op while the inputs are the same), each model's checkpoint (a finished
 * run is kept, an interrupted one resumed), each model's evaluation ({@code quickstart-eval.json},
 * while the model's step and the evaluation tokens are the same) and the sweep.
 */
public final class Quickstart {

    /** The models compared, Dense first (the speed reference). */
    public static final List<String> PRESETS = List.of("dense-small", "smoe-small", "dsmoe-small");
    /** The prompt of the greedy completions. */
    public static final String PROMPT = "public static int max(int a, int b) {";

    /**
     * The settings every model trains with and the corpus is prepared with: the train and prepare
     * verbs' defaults (QuickstartCommandTest checks that they still are).
     */
    public static final double LR = 1e-3, WEIGHT_DECAY = 0.01, CLIP = 1.0, VAL_FRACTION = 0.005;
    public static final long SEED = 1234, WARMUP = -1, TOKENIZER_SAMPLE_MB = 32;
    public static final String GLOB = "**";

    /** What the run directory holds. */
    public static final String RESULTS_MD = "results.md", RESULTS_JSON = "results.json", LOSS_CURVES = "loss_curves.png",
            SWEEP = "sweep", DATA = "data", EVAL_CACHE = "quickstart-eval.json";

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);

    /**
     * A run: {@code minutes} of total budget (training gets about 70%), the run directory, the
     * corpus, the tokenizer's vocabulary, the validation tokens scored per strategy, the code
     * task's items; {@code tiny}: tiny models and short runs (a smoke test of the pipeline);
     * {@code fresh}: the models and results are deleted first (the prepared data is kept).
     */
    public record Options(double minutes, Path dir, List<Path> inputs, int vocabSize, long evalTokens, int codeItems,
                          boolean tiny, boolean fresh) {
        public Options {
            if (!(minutes > 0)) throw new IllegalArgumentException("--minutes must be > 0");
            inputs = List.copyOf(inputs);
        }
    }

    /** What the run shows as it goes (the command line prints it); every method may do nothing. */
    public interface Listener {
        /** A line of the run's log: a stage starting, a model's figures, a note. */
        default void say(String line) {}

        /** The state of long work (perplexity, the code task, timing, the sweep), replaced by the next. */
        default void status(String text) {}

        /** The prepare stage's progress. */
        default CorpusPreparer.Listener preparing() {
            return new CorpusPreparer.Listener() {};
        }

        /** The prepare stage's result. */
        default void prepared(Path data, CorpusPreparer.Result result) {}

        /**
         * Before a model is allocated for training or timing ({@code resume}: continuing a
         * checkpoint of it); throws to refuse one that would not fit.
         */
        default void checkTraining(ModelConfig c, boolean resume, int batch, int seqLen) {}

        /**
         * Before the interrupted run in {@code dir} continues: selects the GEMM backend and thread
         * count its state {@code s} recorded (both change the rounding), as {@code train --resume}
         * does, or throws when they cannot be used here. Left as it is, the resume refuses a run
         * saved with others than this process uses.
         */
        default void resuming(Path dir, TrainerState s) {}

        /** The progress of one model's training. */
        default Trainer.Listener training(ModelConfig c) {
            return new Trainer.Listener() {};
        }

        /** One model's training is done (checkpointed in {@code out}). */
        default void trained(Trainer trainer, Path out) {}

        /** A model trains without validation loss: the validation shard is shorter than one window. */
        default void noValidation() {}
    }

    /** What a run did. */
    public record Run(Results results, Report report) {}

    /**
     * quickstart-eval.json: a model's measurements, valid for its step, the evaluation tokens and
     * the way speeds are timed ({@link #TIMING}).
     */
    record EvalCache(@JsonProperty("step") long step, @JsonProperty("eval_tokens") long evalTokens,
                     @JsonProperty("timing") String timing, @JsonProperty("rows") List<Measurement> rows) {}

    /**
     * Timed runs per speed figure (the median is reported): a run of the small models decodes its
     * 64 tokens in about 30 ms, where a shared machine's spread is large.
     */
    static final int SPEED_REPEATS = 9;

    /**
     * Timed rounds of {@link #decodeTogether}: a round of the four rows takes about 0.2 s, and
     * fewer rounds left the same-time ratio to Dense moving by ±15 % from run to run.
     */
    static final int TOGETHER_REPEATS = 31;

    /** How the speed columns are timed; a cache written another way is measured again. */
    static final String TIMING = "validation text, teacher-forced, median of " + SPEED_REPEATS;

    private final Options o;
    private final Listener listener;
    private long start;

    public Quickstart(Options o, Listener listener) {
        this.o = o;
        this.listener = listener;
    }

    private int seq() {
        return o.tiny() ? 32 : 256;
    }

    private int batch() {
        return o.tiny() ? 2 : 8;
    }

    private double elapsed() {
        return (System.nanoTime() - start) / 1e9;
    }

    private void say(String fmt, Object... args) {
        listener.say(String.format(Locale.ROOT, fmt, args));
    }

    /** All stages in order. */
    public Run run() throws IOException {
        start = System.nanoTime();
        Files.createDirectories(o.dir());
        if (o.fresh()) {
            for (String p : PRESETS) deleteTree(o.dir().resolve(p));
            for (String f : List.of(RESULTS_MD, RESULTS_JSON, LOSS_CURVES)) Files.deleteIfExists(o.dir().resolve(f));
            deleteTree(o.dir().resolve(SWEEP));
        }
        Path data = o.dir().resolve(DATA);
        say("1/5 preparing the corpus -> %s", data);
        listener.prepared(data, prepare(data));

        train(data, 0.70 * o.minutes() * 60 - elapsed());

        List<Measurement> measured = new ArrayList<>();
        try (TokenDataset ds = TokenDataset.open(data)) {
            List<CodeTask.Item> code = codeTask(ds);
            say("4/5 evaluating and timing each model (%d validation tokens per strategy, %d code-task items)",
                    Perplexity.tokensRead(ds.val().size(), o.evalTokens()), code.size());
            warmUp(ds);
            for (String p : PRESETS) measured.addAll(evaluate(p, ds, code));
            measured = decodeTogether(measured, ds);
            sweep(ds);
        }
        double denseDecode = measured.stream().filter(m -> m.model().equals(PRESETS.getFirst()))
                .mapToDouble(Measurement::decodeTokensPerSecond).findFirst().orElse(Double.NaN);
        List<Row> rows = measured.stream().map(m -> new Row(m, m.decodeTokensPerSecond() / denseDecode)).toList();
        Results results = new Results(rows, completions());

        say("5/5 writing the table and plots");
        return new Run(results, report(results));
    }

    // ---- prepare

    /** The corpus tokenized into {@code data} (nothing to do when it is up to date). */
    CorpusPreparer.Result prepare(Path data) throws IOException {
        return CorpusPreparer.prepare(new CorpusPreparer.Options(o.inputs(), GLOB, data, o.vocabSize(),
                o.tiny() ? 0.2 : VAL_FRACTION, TOKENIZER_SAMPLE_MB << 20, null, false), listener.preparing());
    }

    // ---- train

    /** A preset as the quickstart trains it: for --tiny, the same families and size matching at 1/8 of the width. */
    ModelConfig config(String preset) {
        ModelConfig c = ModelPresets.get(preset);
        if (!o.tiny()) return c;
        return c.toBuilder().dEmb(32).numLayers(1).dAtt(8).dFfd(c.dFfd() / 8).maxPositions(64).build();
    }

    /**
     * Trains the presets for the same number of steps, fitted to {@code seconds} when none has
     * started; returns that number. Finished runs are kept, interrupted ones resumed.
     */
    long train(Path data, double seconds) throws IOException {
        Map<String, TrainerState> todo = new LinkedHashMap<>(); // null: a fresh run
        long steps = 0;
        for (String p : PRESETS) {
            Path dir = o.dir().resolve(p);
            TrainerState s = null;
            if (Files.isRegularFile(dir.resolve(TrainerState.FILE))) {
                s = Trainer.readState(dir);
                steps = Math.max(steps, s.totalSteps());
                if (s.step() >= s.totalSteps()) continue;
            }
            todo.put(p, s);
        }
        if (todo.isEmpty()) {
            say("2/5 3/5 the three models are trained already (%d steps each); reusing them", steps);
            return steps;
        }
        try (TrainData td = TrainData.open(data)) {
            if (steps == 0) {
                say("2/5 timing one training step of each model to share the %.1f minutes of training", seconds / 60);
                double perStep = 0;
                for (String p : PRESETS) perStep += time(config(p).toBuilder().vocabSize(td.vocabSize()).build().validate());
                steps = Math.max(o.tiny() ? 4 : 20, (long) (seconds / (perStep * 1.25))); // optimizer, evaluation, checkpoints
                say("   %d steps of %d tokens per model (%.1f s per step for all three)", steps, batch() * seq(), perStep);
            }
            for (var e : todo.entrySet()) {
                String p = e.getKey();
                Path out = o.dir().resolve(p);
                TrainerState saved = e.getValue();
                say("3/5 training %s%s", p, saved != null ? " (resuming)" : "");
                Trainer t = saved != null ? resume(out, saved, td)
                        : fresh(config(p).toBuilder().vocabSize(td.vocabSize()).build().validate(), steps, out, td);
                t.run(listener.training(t.config()));
                listener.trained(t, out);
            }
        }
        return steps;
    }

    /** Seconds of one forward + backward of {@code c} at the quickstart's batch (the fastest of 3, after warm-up passes). */
    double time(ModelConfig c) {
        listener.checkTraining(c, false, batch(), seq());
        // Warm the JIT first: cold passes take up to three times as long and would shrink the
        // budget (measured: 0.6 s per step after 3 passes against 0.4 s in the real run).
        return StepTiming.randomModel(c, batch(), seq(), 1).fastestSeconds(o.tiny() ? 2 : 8, 3);
    }

    /** How often a run of {@code steps} steps saves and evaluates, on how many batches. */
    private static TrainerState.Operational schedule(long steps) {
        return new TrainerState.Operational(Math.max(10, steps / 4), Math.max(1, steps / 5), 4, false);
    }

    private Trainer fresh(ModelConfig c, long steps, Path out, TrainData td) {
        BatchSource train = td.train(batch(), seq(), SEED);
        BatchSource val = validation(td, batch(), seq());
        TrainerState.Operational op = schedule(steps);
        int evalBatches = (int) Math.min(op.evalBatches(), td.validationBatches(batch(), seq()));
        Trainer.Options t = new Trainer.Options(batch(), seq(), 1, LR, LR / 10, WARMUP, WEIGHT_DECAY, CLIP, SEED, steps, 0,
                op.saveEvery(), val == null ? 0 : op.evalEvery(), Math.max(1, evalBatches), 0, "--steps " + steps, op.json());
        listener.checkTraining(c, false, batch(), seq());
        return Trainer.fresh(c, t, train, val, out, td.tokenizer(), td.description(), td.fingerprint());
    }

    /**
     * Continues the interrupted run in {@code out}, whose state {@code s} is, with its saved
     * settings, GEMM backend and thread count (both change the rounding), as {@code train --resume} does.
     */
    private Trainer resume(Path out, TrainerState s, TrainData td) throws IOException {
        if (s.batch() != batch() || s.seqLen() != seq()) {
            throw new IllegalArgumentException(out + " was trained on batches of " + s.batch() + " x " + s.seqLen()
                    + " tokens, this quickstart uses " + batch() + " x " + seq() + " (--tiny or not); add --fresh to start over");
        }
        if (s.dataFingerprint() != null && !s.dataFingerprint().equals(td.fingerprint())) {
            throw new IllegalArgumentException(out + " was trained on other data than " + td.dir() + " now holds; add --fresh to start over");
        }
        listener.resuming(out, s);
        // a format-1 state saved no operational settings: the quickstart's own schedule
        TrainerState.Operational op = s.operational(schedule(s.totalSteps()));
        BatchSource train = td.train(s.batch(), s.seqLen(), s.seed());
        BatchSource val = validation(td, s.batch(), s.seqLen());
        int evalN = (int) Math.min(op.evalBatches(), td.validationBatches(s.batch(), s.seqLen()));
        Trainer.Options t = new Trainer.Options(s.batch(), s.seqLen(), s.gradAccum(), s.lr(), s.minLr(), s.warmupSteps(),
                s.weightDecay(), s.clip(), s.seed(), 0, 0, op.saveEvery(), val == null ? 0 : op.evalEvery(), Math.max(1, evalN), 0,
                null, op.json());
        ModelConfig c = ModelFiles.readConfig(out);
        listener.checkTraining(c, true, s.batch(), s.seqLen());
        return Trainer.resume(out, s, c, t, train, val, out, td.tokenizer(), td.description(), td.fingerprint());
    }

    private BatchSource validation(TrainData td, int batch, int seqLen) {
        BatchSource val = td.validation(batch, seqLen);
        if (val == null) listener.noValidation();
        return val;
    }

    // ---- evaluate and time

    private List<CodeTask.Item> codeTask(TokenDataset ds) throws IOException {
        Tokenizer tok = ds.tokenizer();
        CodeTask.Options c = CodeTask.Options.DEFAULTS.withItems(o.codeItems());
        if (o.tiny()) c = new CodeTask.Options(Math.min(o.codeItems(), 20), 8, 4, 3, 1234);
        try {
            return CodeTask.build(ds.val(), tok.endOfTextId(), c, id -> tok.tokenBytes(id).length);
        } catch (IllegalArgumentException e) {
            say("note: no code task: %s", e.getMessage());
            return List.of();
        }
    }

    /** The strategies each model is reported under: DS-MoE dense and threshold (ε 0.48 on the MLP, MoA dense). */
    static List<String> strategies(String preset) {
        return switch (preset) {
            case "dsmoe-small" -> List.of("dense", "threshold:" + Strategies.PAPER_EPSILON);
            default -> List.of("default");
        };
    }

    /** Prompt and decoded tokens of the speed measurements (the models' and the sweep's). */
    private int speedPrompt() {
        return o.tiny() ? 16 : 128;
    }

    private int speedDecode() {
        return o.tiny() ? 8 : 64;
    }

    /** Timing runs on the start of the validation text (teacher-forced), as the sweep's. */
    private InferenceBenchmarks speedBenchmark(int warmup, int repeats, String label, TokenDataset ds) {
        return new InferenceBenchmarks(speedPrompt(), speedDecode(), warmup, repeats, msg -> listener.status(label + msg))
                .text(ds.val().head(speedPrompt() + speedDecode()));
    }

    /** Untimed decode and prefill on every model first, so the JIT does not bill its work to the first row. */
    private void warmUp(TokenDataset ds) throws IOException {
        for (String p : PRESETS) {
            try (InferenceModel m = InferenceModel.load(o.dir().resolve(p), MatVec.DType.F32)) {
                speedBenchmark(2, 1, "JIT warm-up ", ds).run(p, m, strategies(p));
            }
        }
    }

    /** A preset's measurements under its strategies: from quickstart-eval.json while it is valid, else evaluated, timed and saved there. */
    List<Measurement> evaluate(String preset, TokenDataset ds, List<CodeTask.Item> code) throws IOException {
        Path modelDir = o.dir().resolve(preset);
        Path cache = modelDir.resolve(EVAL_CACHE);
        long step = TrainerState.fromJson(Files.readString(modelDir.resolve(TrainerState.FILE))).step();
        if (Files.isRegularFile(cache)) {
            JsonNode node = JSON.readTree(Files.readString(cache));
            if (node.path("step").asLong() == step && node.path("eval_tokens").asLong() == o.evalTokens()
                    && TIMING.equals(node.path("timing").asText())) {
                return JSON.treeToValue(node, EvalCache.class).rows();
            }
        }
        List<Measurement> rows = new ArrayList<>();
        try (InferenceModel m = InferenceModel.load(modelDir, MatVec.DType.F32)) {
            ModelConfig c = m.config();
            for (String s : strategies(preset)) {
                ExpertSelection sel = ExpertSelection.parse(s, c);
                Evaluation e = evaluate(preset, m, sel, ds, code);
                InferenceBenchmarks.Row speed = time(preset, m, s, ds);
                Measurement r = Measurement.of(preset, c, e, speed);
                rows.add(r);
                say("   %s %-22s ppl %.2f  code acc %.1f%%  active hidden %.0f%%  decode %.0f tok/s", preset, sel,
                        r.valPpl(), 100 * r.codeAcc(), r.activeHiddenPct(), r.decodeTokensPerSecond());
            }
        }
        AtomicFiles.writeString(cache, JSON.writeValueAsString(new EvalCache(step, o.evalTokens(), TIMING, rows)));
        return rows;
    }

    /** Validation perplexity of {@code m} under {@code sel}, and the code task (when there is one). */
    private Evaluation evaluate(String preset, InferenceModel m, ExpertSelection sel, TokenDataset ds, List<CodeTask.Item> code) {
        Engine e = new Engine(m, sel);
        int seq = Math.min(seq(), m.config().maxPositions());
        Perplexity.Result ppl = Perplexity.evaluate(e, ds.val(), seq, o.evalTokens(),
                (done, total, sec) -> listener.status(String.format(Locale.ROOT, "%s %s: perplexity %d/%d tokens",
                        preset, sel, done, total)));
        MultipleChoice.Result mc = code.isEmpty() ? null : MultipleChoice.evaluate("code", e, CodeTask.tokenItems(code),
                (done, total, sec) -> listener.status(String.format(Locale.ROOT, "%s %s: code task %d/%d", preset, sel, done, total)));
        return new Evaluation(ppl, mc);
    }

    /** Prefill and decode speed of {@code m} under {@code strategy} (medians of {@link #SPEED_REPEATS} after 3 warm-up runs). */
    private InferenceBenchmarks.Row time(String preset, InferenceModel m, String strategy, TokenDataset ds) {
        return speedBenchmark(3, SPEED_REPEATS, preset + " ", ds).run(preset, m, List.of(strategy)).getFirst();
    }

    /**
     * Every row's decode speed timed again, all rows together ({@link DecodeSpeed#measureSubjects}:
     * round by round, one run of each model and strategy per round), in place of each model's own
     * figure: those are timed minutes apart, and a shared machine drifts by more than DS-MoE's
     * lead over Dense at these sizes in that time, so "decode vs Dense" must be a same-time ratio.
     * Not cached: it takes seconds. Rows come in {@link #PRESETS} order, each preset's
     * {@link #strategies} in order, as {@link #evaluate} returns them.
     */
    List<Measurement> decodeTogether(List<Measurement> measured, TokenDataset ds) throws IOException {
        List<InferenceModel> models = new ArrayList<>();
        try {
            List<DecodeSpeed.Subject> subjects = new ArrayList<>();
            for (String p : PRESETS) {
                InferenceModel m = InferenceModel.load(o.dir().resolve(p), MatVec.DType.F32);
                models.add(m);
                Engine e = new Engine(m, ExpertSelection.defaultFor(m.config()), speedPrompt() + speedDecode(), Engine.DEFAULT_CHUNK);
                for (String s : strategies(p)) subjects.add(new DecodeSpeed.Subject(p + " " + s, e, ExpertSelection.parse(s, m.config())));
            }
            if (subjects.size() != measured.size()) {
                throw new IllegalStateException(measured.size() + " measured rows for " + subjects.size() + " timed ones");
            }
            say("   decode speed of all %d rows timed together, round by round (%d runs each)", subjects.size(), TOGETHER_REPEATS);
            DecodeSpeed speed = DecodeSpeed.fromShard(subjects.getFirst().engine(), ds.val(), speedPrompt(), speedDecode(),
                    TOGETHER_REPEATS, DecodeSpeed.DEFAULT_WARMUP_SECONDS);
            List<DecodeSpeed.Result> results = speed.measureSubjects(subjects,
                    (d, t, sec) -> listener.status("timing decode together " + d + "/" + t));
            List<Measurement> out = new ArrayList<>();
            for (int i = 0; i < measured.size(); i++) {
                Measurement r = measured.get(i).withDecode(results.get(i).tokensPerSecond());
                out.add(r);
                say("   %-30s decode %.0f tok/s", subjects.get(i).label(), r.decodeTokensPerSecond());
            }
            return out;
        } finally {
            for (InferenceModel m : models) m.close();
        }
    }

    /**
     * Perplexity of DS-MoE against active parameters and against decode speed over threshold ε
     * (MLP routers; MoA dense; decode timed as the models' speed is, prompt and decoded tokens
     * from the validation data); kept once written.
     */
    List<Sweep.Point> sweep(TokenDataset ds) throws IOException {
        Path out = o.dir().resolve(SWEEP);
        if (Files.exists(out.resolve(Sweep.baseName(false) + ".png")) && Files.exists(out.resolve(Sweep.speedPlotName(false)))) {
            return List.of();
        }
        say("   DS-MoE threshold sweep -> %s", out);
        try (InferenceModel m = InferenceModel.load(o.dir().resolve("dsmoe-small"), MatVec.DType.F32)) {
            int seq = Math.min(seq(), m.config().maxPositions());
            long limit = Math.max(seq + 1, o.evalTokens() / 2);
            Engine timing = new Engine(m, ExpertSelection.dense(), speedPrompt() + speedDecode(), Engine.DEFAULT_CHUNK);
            DecodeSpeed speed = DecodeSpeed.fromShard(timing, ds.val(), speedPrompt(), speedDecode(), SPEED_REPEATS,
                    DecodeSpeed.DEFAULT_WARMUP_SECONDS);
            List<Sweep.Point> pts = Sweep.run(sel -> Perplexity.evaluate(new Engine(m, sel), ds.val(), seq, limit,
                    (d, t, s) -> listener.status("sweep " + sel + " " + d + "/" + t)), speed,
                    (d, t, s) -> listener.status("sweep: timing decode " + d + "/" + t), Sweep.DEFAULT_EPS, false);
            Files.createDirectories(out);
            Sweep.write(out, "DS-MoE (dsmoe-small): perplexity vs active parameters",
                    "DS-MoE (dsmoe-small): perplexity vs single-stream decode speed (fp32)", pts, false);
            return pts;
        }
    }

    /** Each model's greedy completion of {@link #PROMPT} (up to 40 tokens, as the context allows). */
    private Map<String, String> completions() throws IOException {
        Map<String, String> out = new LinkedHashMap<>();
        for (String p : PRESETS) {
            Path d = o.dir().resolve(p);
            Tokenizer tok = Tokenizer.load(d.resolve(ModelFiles.TOKENIZER));
            try (InferenceModel m = InferenceModel.load(d, MatVec.DType.F32)) {
                int[] ids = tok.encode(PROMPT);
                int max = Math.min(40, m.config().maxPositions() - ids.length - 1);
                if (max < 1) continue;
                Generator.Result r = new Generator(new Engine(m, ExpertSelection.defaultFor(m.config())),
                        Sampler.greedy(m.config().vocabSize())).generate(ids, max, tok.endOfTextId(), t -> true);
                out.put(p, tok.decode(r.tokens()));
            }
        }
        return out;
    }

    // ---- report

    /** Writes the loss curves, results.md and results.json. */
    Report report(Results results) throws IOException {
        List<LossCurves.Curve> curves = new ArrayList<>();
        for (String p : PRESETS) curves.add(LossCurves.read(p, o.dir().resolve(p).resolve(Trainer.METRICS), 20));
        Path png = o.dir().resolve(LOSS_CURVES), md = o.dir().resolve(RESULTS_MD), json = o.dir().resolve(RESULTS_JSON);
        byte[] image = LossCurves.png("training loss, size-matched models, same tokens", curves);
        AtomicFiles.write(png, ch -> ch.write(ByteBuffer.wrap(image)));
        String table = table(results.rows()) + String.format(Locale.ROOT, "%nprefill and decode tok/s: fp32 weights, "
                + "a %d-token prompt from the validation text, then its next %d tokens decoded teacher-forced, "
                + "one sequence, in this process. Prefill: each model timed on its own, median of %d runs after a warm-up; "
                + "decode: all rows timed together, round by round (one run of each per round), median of %d rounds after "
                + "a warm-up, so decode vs Dense compares the same seconds.%n", speedPrompt(), speedDecode(), SPEED_REPEATS,
                TOGETHER_REPEATS);
        String sweep = sweepSection();
        AtomicFiles.writeString(md, table + (sweep.isEmpty() ? "" : "\n" + sweep));
        AtomicFiles.writeString(json, JSON.writeValueAsString(results));
        return new Report(md, json, png, o.dir().resolve(SWEEP), table, sweep);
    }

    /**
     * The sweep's table and its note (sweep/sweep.md below its title) under a heading, with its
     * two plots; empty when there is no sweep.
     */
    private String sweepSection() throws IOException {
        Path dir = o.dir().resolve(SWEEP), md = dir.resolve(Sweep.baseName(false) + ".md");
        if (!Files.isRegularFile(md)) return "";
        String text = Files.readString(md);
        int body = text.startsWith("# ") && text.contains("\n\n") ? text.indexOf("\n\n") + 2 : 0;
        StringBuilder sb = new StringBuilder("## DS-MoE threshold sweep (MLP experts; MoA dense)\n\n").append(text.substring(body));
        sb.append('\n');
        String[][] plots = {{Sweep.baseName(false) + ".png", "perplexity vs active parameters"},
                {Sweep.speedPlotName(false), "perplexity vs decode tok/s"}};
        for (String[] p : plots) {
            if (Files.isRegularFile(dir.resolve(p[0]))) sb.append("![").append(p[1]).append("](" + SWEEP + "/").append(p[0]).append(")\n");
        }
        return sb.toString();
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(x);
        }
    }
}
