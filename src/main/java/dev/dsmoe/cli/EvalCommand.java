package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.data.TokenDataset;
import dev.dsmoe.eval.CodeTask;
import dev.dsmoe.eval.DecodeSpeed;
import dev.dsmoe.eval.MultipleChoice;
import dev.dsmoe.eval.Perplexity;
import dev.dsmoe.eval.Strategies;
import dev.dsmoe.eval.Sweep;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamCounts;
import dev.dsmoe.tokenizer.Tokenizer;
import dev.dsmoe.train.TrainData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code ./dsmoe eval}: validation perplexity under expert selections, threshold sweeps with a
 * plot, and zero-shot multiple choice (a JSONL file, and a built-in code task from the
 * validation split). The math lives in {@code dev.dsmoe.eval}; this class parses, shows
 * progress and prints.
 */
@Command(name = "eval", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Evaluate a model directory: validation loss and perplexity (windows of --seq tokens over the whole"
                + " validation shard; the first token of each window is context only) under each expert selection, with the"
                + " mean active MoA and MLP experts per token, active parameters per token and active hidden %%.",
                "Without --strategy: dense for a Dense model; the training top-k and dense for an SMoE; dense, top-k:N_ffd/4,"
                + " threshold:0.48 and threshold-top-k:0.48 (MLP; MoA dense) for a DS-MoE.",
                "--sweep: perplexity against active parameters over threshold ε, and against single-stream decode tok/s"
                + " timed at each ε on the same model (table, CSV, JSON and two PNGs in --out).",
                "--choices FILE / --code-task: zero-shot multiple choice by log-likelihood: acc, and acc_norm (log-likelihood"
                + " per UTF-8 byte of the choice)."})
final class EvalCommand implements Callable<Integer> {

    @Option(names = "--model", required = true, paramLabel = "DIR",
            description = "Model or checkpoint directory (config.json, model.safetensors, tokenizer.json).")
    Path model;

    @Option(names = "--data", paramLabel = "DIR",
            description = "Data directory from 'dsmoe prepare' (val.bin, meta.json). Default: the one recorded in the model's trainer_state.json.")
    Path data;

    @Mixin
    SelectionOption strategies;

    @Option(names = "--seq", paramLabel = "N", description = "Window length in tokens (default: the model's max_position_embeddings).")
    Integer seq;

    @Option(names = "--max-tokens", paramLabel = "N",
            description = "Read only the first N tokens of the validation shard (quick runs; default: all of it).")
    Long maxTokens;

    @Option(names = "--no-perplexity", description = "Skip the perplexity runs (e.g. for zero-shot tasks only).")
    boolean noPerplexity;

    @Option(names = "--sweep", description = "Threshold sweep: perplexity against active parameters per token for each --eps.")
    boolean sweep;

    @Option(names = "--eps", split = ",", paramLabel = "EPS",
            description = "Threshold ε values of the sweep. Default: 0,0.1,0.2,0.3,0.48,0.6,0.8,1.0,1.5,2.0.")
    double[] eps;

    @Option(names = "--sweep-attention", description = "Apply the sweep's threshold to the MoA routers too (default: MLP only, MoA dense).")
    boolean sweepAttention;

    @Option(names = "--sweep-decode", paramLabel = "N",
            description = "Decode timing of the sweep: at each ε (and dense), prefill a short prompt from the validation data,"
                    + " then decode the next N tokens of it (teacher-forced), one stream; the median of --sweep-repeats runs after"
                    + " a warm-up gives the decode tok/s and decode vs dense columns and a second plot, perplexity against"
                    + " decode tok/s. 0: no timing. Default: " + DecodeSpeed.DEFAULT_DECODE + " (at most half the model's context).")
    Integer sweepDecode;

    @Option(names = "--sweep-repeats", paramLabel = "R",
            description = "Timed decode runs per sweep point; the median is reported. Default: " + DecodeSpeed.DEFAULT_REPEATS + ".")
    Integer sweepRepeats;

    @Option(names = "--out", paramLabel = "DIR", description = "Where the sweep's files go. Default: MODEL/eval.")
    Path out;

    @Option(names = "--choices", paramLabel = "FILE.jsonl",
            description = "Multiple-choice items, one JSON object a line: {\"context\": str, \"choices\": [str, ...], \"gold\": int}.")
    Path choices;

    @Option(names = "--code-task", description = "The built-in zero-shot code task: the true continuation of a held-out snippet among 3 from other files.")
    boolean codeTask;

    @Option(names = "--code-task-size", defaultValue = "200", paramLabel = "N", description = "Items of the code task. Default: ${DEFAULT-VALUE}.")
    int codeTaskSize;

    @Option(names = "--code-task-context", defaultValue = "64", paramLabel = "N", description = "Context tokens of a code task item. Default: ${DEFAULT-VALUE}.")
    int codeTaskContext;

    @Option(names = "--code-task-continuation", defaultValue = "16", paramLabel = "N",
            description = "Tokens of each code task choice. Default: ${DEFAULT-VALUE}.")
    int codeTaskContinuation;

    @Option(names = "--code-task-seed", defaultValue = "1234", paramLabel = "N", description = "Seed of the code task's choice of snippets. Default: ${DEFAULT-VALUE}.")
    long codeTaskSeed;

    @Mixin
    ComputeOptions.Dtype dtype;
    /** The type the weights load in ({@link ComputeOptions.Dtype#forModel}). */
    private MatVec.DType weights;

    @Option(names = "--json", description = "One JSON object per result (strategy, sweep point, task) on stdout instead of tables.")
    boolean json;

    private final ObjectMapper om = new ObjectMapper();

    @Override
    public Integer call() throws Exception {
        // ---- inputs, all checked before any long work
        if (!Files.isDirectory(model)) throw new Errors.UserError("--model " + model + ": no such directory");
        for (String f : List.of(ModelFiles.CONFIG, ModelFiles.MODEL)) {
            if (!Files.isRegularFile(model.resolve(f))) {
                throw new Errors.UserError("--model " + model + ": no " + f + " (a model directory holds config.json, "
                        + "model.safetensors and tokenizer.json)");
            }
        }
        ModelConfig config = ModelFiles.readConfig(model);
        weights = dtype.forModel(model);
        int window = seq != null ? seq : config.maxPositions();
        if (window > config.maxPositions()) {
            throw new Errors.UserError("--seq " + window + " exceeds the model's context (max_position_embeddings "
                    + config.maxPositions() + ")");
        }
        if (window < 2) throw new Errors.UserError("--seq must be at least 2 (one context token and one scored), got " + window);
        if (maxTokens != null && maxTokens < 2) throw new Errors.UserError("--max-tokens must be at least 2, got " + maxTokens);
        List<ExpertSelection> selections = strategies.all(config, () -> Strategies.defaultsFor(config));
        double[] epsValues = null;
        if (sweep) {
            try {
                epsValues = Sweep.checkEps(eps != null ? eps : Sweep.DEFAULT_EPS);
            } catch (IllegalArgumentException e) {
                throw new Errors.UserError(e.getMessage());
            }
            if (sweepDecode != null && sweepDecode < 0) throw new Errors.UserError("--sweep-decode must be >= 0, got " + sweepDecode);
            if (sweepDecode != null && sweepDecode >= config.maxPositions()) {
                throw new Errors.UserError("--sweep-decode " + sweepDecode + " leaves no room for a prompt in the model's context"
                        + " (max_position_embeddings " + config.maxPositions() + "); use at most " + (config.maxPositions() - 1));
            }
            if (sweepRepeats != null && sweepRepeats < 1) throw new Errors.UserError("--sweep-repeats must be >= 1, got " + sweepRepeats);
        } else if (eps != null || sweepAttention || sweepDecode != null || sweepRepeats != null) {
            throw new Errors.UserError((eps != null ? "--eps" : sweepAttention ? "--sweep-attention"
                    : sweepDecode != null ? "--sweep-decode" : "--sweep-repeats") + " goes with --sweep");
        }
        boolean needVal = !noPerplexity || sweep || codeTask;
        if (!needVal && choices == null) {
            throw new Errors.UserError("nothing to evaluate: --no-perplexity without --sweep, --code-task or --choices");
        }
        CodeTask.Options codeOptions = null;
        if (codeTask) {
            try {
                codeOptions = new CodeTask.Options(codeTaskSize, codeTaskContext, codeTaskContinuation, 3, codeTaskSeed);
            } catch (IllegalArgumentException e) {
                throw new Errors.UserError("--code-task: " + e.getMessage());
            }
            if (codeTaskContext + codeTaskContinuation > config.maxPositions()) {
                throw new Errors.UserError("--code-task-context + --code-task-continuation (" + (codeTaskContext + codeTaskContinuation)
                        + ") exceed the model's context (max_position_embeddings " + config.maxPositions() + "); lower --code-task-context");
            }
        }

        Path dataDir = data;
        if (dataDir == null && needVal) {
            dataDir = TrainData.dataDirOf(model);
            if (dataDir == null) {
                throw new Errors.UserError("--data DIR is required: " + model + " has no trainer_state.json naming its data");
            }
            if (!Files.isDirectory(dataDir)) {
                throw new Errors.UserError(model + "/trainer_state.json names the data directory " + dataDir
                        + ", which does not exist; pass --data DIR");
            }
        }
        if (dataDir != null) ValidationData.require(dataDir);
        try (TokenDataset ds = dataDir == null ? null : TokenDataset.open(dataDir)) {
            return evaluate(config, window, selections, epsValues, codeOptions, ds);
        } finally {
            Terminal.clearStatus();
        }
    }

    private int evaluate(ModelConfig config, int window, List<ExpertSelection> selections,
                         double[] epsValues, CodeTask.Options codeOptions, TokenDataset ds) throws IOException {
        if (ds != null && ds.vocabSize() > config.vocabSize()) {
            throw new Errors.UserError("--data " + ds.dir() + " was tokenized with " + ds.vocabSize()
                    + " ids but the model's vocab_size is " + config.vocabSize() + "; use the data the model was trained on");
        }
        Tokenizer tok = tokenizer(config, ds);
        if (ds != null && (!noPerplexity || epsValues != null || codeOptions != null) && ds.val().size() < 2) {
            throw new Errors.UserError(ds.dir().resolve(TokenDataset.VAL) + ": the validation shard "
                    + (ds.val().size() == 0 ? "is empty" : "has a single token") + "; prepare with a larger --val-fraction");
        }
        List<MultipleChoice.TokenItem> choiceItems = null;
        if (choices != null) {
            if (tok == null) throw new Errors.UserError("--choices needs a tokenizer: " + model + " has no tokenizer.json");
            List<MultipleChoice.Item> items = MultipleChoice.readJsonl(choices);
            choiceItems = new ArrayList<>();
            for (int i = 0; i < items.size(); i++) {
                try {
                    choiceItems.add(MultipleChoice.tokenize(items.get(i), tok));
                } catch (IllegalArgumentException e) {
                    throw new Errors.UserError(choices + " item " + (i + 1) + ": " + e.getMessage());
                }
            }
        }
        List<CodeTask.Item> codeItems = null;
        if (codeOptions != null) {
            Tokenizer t = tok;
            codeItems = CodeTask.build(ds.val(), ds.meta().eotId(), codeOptions, id -> tokenBytes(t, id));
        }

        long valTokens = ds == null ? 0 : Perplexity.tokensRead(ds.val().size(), maxTokens == null ? -1 : maxTokens);
        if (!json) {
            System.out.printf(Locale.ROOT, "model %s: %s, %s non-embedding parameters, context %d, %s weights, %d threads%n",
                    model, TrainCommand.describe(config), Sweep.params(ParamCounts.of(config).nonEmbedding()),
                    config.maxPositions(), ComputeOptions.Dtype.label(weights), ComputeOptions.threads());
            if (ds != null && (!noPerplexity || epsValues != null)) {
                System.out.printf(Locale.ROOT, "validation %s: %,d of %,d tokens in %,d windows of %d (%,d scored)%n",
                        ds.dir().resolve(TokenDataset.VAL), valTokens, ds.val().size(), Perplexity.windows(valTokens, window),
                        window, Perplexity.scoredTokens(valTokens, window));
            }
        }

        MemoryCheck.model(model, weights, config.maxPositions());
        try (InferenceModel m = InferenceModel.load(model, weights)) {
            Engine engine = new Engine(m, selections.getFirst(), config.maxPositions(), Engine.DEFAULT_CHUNK);
            if (ds != null && ds.val().size() >= 2) Perplexity.warmUp(engine, ds.val(), window, 64, 3.0); // tok/s without JIT time
            Map<String, Perplexity.Result> cache = new HashMap<>();
            java.util.function.Function<ExpertSelection, Perplexity.Result> ppl = sel -> cache.computeIfAbsent(sel.toString(), k -> {
                engine.setSelection(sel);
                Progress p = new Progress("perplexity " + sel, "tokens");
                Perplexity.Result r = Perplexity.evaluate(engine, ds.val(), window, maxTokens == null ? -1 : maxTokens,
                        p::update);
                p.done();
                return r;
            });

            if (!noPerplexity) {
                List<Perplexity.Result> rows = new ArrayList<>();
                for (ExpertSelection sel : selections) {
                    Perplexity.Result r = ppl.apply(sel);
                    rows.add(r);
                    if (json) printJson("perplexity", r.toMap());
                }
                if (!json) printPerplexityTable(config, rows);
            }

            if (epsValues != null) {
                int decode = sweepDecode != null ? sweepDecode : DecodeSpeed.defaultDecodeTokens(config.maxPositions());
                DecodeSpeed speed = decode == 0 ? null : DecodeSpeed.fromShard(engine, ds.val(),
                        DecodeSpeed.defaultPromptTokens(engine.contextLength(), decode), decode,
                        sweepRepeats != null ? sweepRepeats : DecodeSpeed.DEFAULT_REPEATS, DecodeSpeed.DEFAULT_WARMUP_SECONDS);
                Progress timing = new Progress("sweep: timing decode", "runs");
                List<Sweep.Point> points = Sweep.run(ppl, speed, timing::update, epsValues, sweepAttention);
                timing.done();
                Path dir = out != null ? out : model.resolve("eval");
                String name = String.valueOf(model.toAbsolutePath().normalize().getFileName());
                String on = "threshold on " + (sweepAttention ? "MLP and MoA" : "MLP; MoA dense");
                String title = "Perplexity vs active parameters: " + name + " (" + on + ")";
                String speedTitle = String.format(Locale.ROOT, "Perplexity vs decode speed: %s (%s; %s, %d threads)", name,
                        sweepAttention ? "MLP and MoA" : "MLP; MoA dense", ComputeOptions.Dtype.label(weights), ComputeOptions.threads());
                List<Path> files = Sweep.write(dir, title, speedTitle, points, sweepAttention);
                if (json) {
                    for (Sweep.Point p : points) {
                        Map<String, Object> o = p.toMap();
                        o.put("attention", sweepAttention);
                        printJson("sweep", o);
                    }
                    System.err.println("dsmoe eval: sweep written to " + files);
                } else {
                    System.out.printf(Locale.ROOT, "%nsweep: threshold ε on %s%n", sweepAttention ? "MLP and MoA routers" : "MLP routers (MoA dense)");
                    System.out.print(Sweep.markdown(points, sweepAttention));
                    String note = Sweep.speedNote(points);
                    if (!note.isEmpty()) System.out.println(note);
                    System.out.println("wrote " + String.join(", ", files.stream().map(Path::toString).toList()));
                }
            }

            if (codeItems != null) {
                String desc = String.format(Locale.ROOT, "code task: %d items from the validation split (%d-token contexts, "
                        + "%d-token continuations, 4 choices)", codeItems.size(), codeOptions.contextTokens(),
                        codeOptions.continuationTokens());
                zeroShot("code", desc, CodeTask.tokenItems(codeItems), engine, selections);
            }
            if (choiceItems != null) {
                zeroShot("choices:" + choices.getFileName(), "multiple choice " + choices + ": " + choiceItems.size() + " items",
                        choiceItems, engine, selections);
            }
        }
        return 0;
    }

    private void zeroShot(String task, String desc, List<MultipleChoice.TokenItem> items, Engine engine,
                          List<ExpertSelection> selections) throws IOException {
        List<MultipleChoice.Result> rows = new ArrayList<>();
        for (ExpertSelection sel : selections) {
            engine.setSelection(sel);
            Progress p = new Progress(task + " " + sel, "items");
            MultipleChoice.Result r = MultipleChoice.evaluate(task, engine, items, p::update);
            p.done();
            rows.add(r);
            if (json) printJson("zero-shot", r.toMap());
        }
        if (json) return;
        System.out.printf(Locale.ROOT, "%n%s; chance %.1f%%%n", desc, 100 * rows.getFirst().chance());
        System.out.println("| selection | acc | acc_norm | items |");
        System.out.println("|---|---:|---:|---:|");
        for (MultipleChoice.Result r : rows) {
            System.out.printf(Locale.ROOT, "| %s | %.1f%% | %.1f%% | %d |%n", r.selection(), 100 * r.acc(), 100 * r.accNorm(), r.items());
        }
    }

    private void printPerplexityTable(ModelConfig c, List<Perplexity.Result> rows) {
        System.out.println();
        System.out.println("| selection | loss | perplexity | MoA active | MLP active | active params/token | active hidden % | tok/s |");
        System.out.println("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (Perplexity.Result r : rows) {
            System.out.printf(Locale.ROOT, "| %s | %.4f | %.3f | %.2f/%d | %.2f/%d | %s | %.1f | %.0f |%n", r.selection(), r.loss(),
                    r.perplexity(), r.stats().meanActiveAttention(), c.nAtt(), r.stats().meanActiveMlp(), c.nFfd(),
                    Sweep.params(r.stats().activeParamsPerToken()), r.stats().activeHiddenPercent(), r.tokensPerSecond());
        }
    }

    private void printJson(String kind, Map<String, Object> fields) throws IOException {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("kind", kind);
        o.put("model", model.toString());
        o.putAll(fields);
        System.out.println(om.writeValueAsString(o).replace("NaN", "null"));
    }

    /** The model's tokenizer.json, else the data's; checked against the model's vocabulary. Null if neither exists. */
    private Tokenizer tokenizer(ModelConfig c, TokenDataset ds) throws IOException {
        Path f = model.resolve(ModelFiles.TOKENIZER);
        if (!Files.isRegularFile(f) && ds != null) f = ds.dir().resolve(TokenDataset.TOKENIZER);
        if (!Files.isRegularFile(f)) return null;
        Tokenizer t = Tokenizer.load(f);
        if (t.vocabSize() > c.vocabSize()) {
            throw new Errors.UserError(f + ": the tokenizer has " + t.vocabSize() + " ids but the model's vocab_size is "
                    + c.vocabSize() + "; it is not this model's tokenizer");
        }
        return t;
    }

    private static int tokenBytes(Tokenizer t, int id) {
        if (t == null || id >= t.vocabSize()) return 1;
        byte[] b = t.tokenBytes(id);
        return b == null ? 0 : b.length;
    }

    /** Progress on stderr: a status line on a terminal; otherwise a line every 10 s of long runs (none with --json). */
    private final class Progress {
        private final String label, unit;
        private final Terminal.Progress display = new Terminal.Progress(json ? null : "dsmoe eval: ", false);

        Progress(String label, String unit) {
            this.label = label;
            this.unit = unit;
        }

        void update(long done, long total, double secs) {
            if (!display.due(done, total, false)) return;
            double f = total <= 0 ? 1 : Math.min(1, done / (double) total);
            double rate = secs > 0 ? done / secs : 0;
            display.show(String.format(Locale.ROOT, "%s %s %,d/%,d %s %.0f %s/s%s", label, Terminal.bar(done, total), done,
                    total, unit, rate, unit, Terminal.eta(secs, f)));
        }

        void done() {
            Terminal.clearStatus();
        }
    }
}
