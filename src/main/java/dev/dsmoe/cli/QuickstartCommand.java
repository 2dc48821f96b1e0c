package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.dsmoe.bench.InferenceBenchmarks;
import dev.dsmoe.data.TokenDataset;
import dev.dsmoe.eval.CodeTask;
import dev.dsmoe.eval.LossCurves;
import dev.dsmoe.eval.MultipleChoice;
import dev.dsmoe.eval.Perplexity;
import dev.dsmoe.eval.Sweep;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.Generator;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.Sampler;
import dev.dsmoe.io.AtomicFiles;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.Init;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.Transformer;
import dev.dsmoe.tokenizer.Tokenizer;
import dev.dsmoe.train.TrainerState;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ./dsmoe quickstart}: the paper's comparison end to end on the default corpus. Prepares
 * the JDK's own sources, trains size-matched Dense, SMoE and DS-MoE models on the same token
 * budget, evaluates them (perplexity, the zero-shot code task, active parameters) and measures
 * their inference speed, DS-MoE under the dense and threshold strategies, then writes the table,
 * loss curves and the ε sweep into the run directory. Every stage is kept on disk: re-running
 * reuses what is done.
 */
@Command(name = "quickstart", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Prepare the default corpus (the JDK's lib/src.zip), train size-matched Dense, SMoE and DS-MoE",
                "for the same token budget, evaluate and time them, and print the paper-style table.",
                "Writes results.md, results.json, loss_curves.png and the DS-MoE epsilon sweep into --dir.",
                "Re-running reuses finished stages (--fresh starts over)."})
final class QuickstartCommand implements Callable<Integer> {

    @Option(names = "--minutes", defaultValue = "20", description = "Total time budget (training gets about 70%%). Default: ${DEFAULT-VALUE}.")
    double minutes;

    @Option(names = "--dir", defaultValue = "runs/quickstart", description = "Run directory. Default: ${DEFAULT-VALUE}.")
    Path dir;

    @Option(names = "--input", description = "Corpus instead of the JDK's src.zip (a zip, a directory, text or JSONL files).")
    Path input;

    @Option(names = "--vocab-size", defaultValue = "8192", description = "Tokenizer vocabulary. Default: ${DEFAULT-VALUE}.")
    int vocabSize;

    @Option(names = "--eval-tokens", defaultValue = "65536", description = "Validation tokens scored per strategy. Default: ${DEFAULT-VALUE}.")
    long evalTokens;

    @Option(names = "--code-items", defaultValue = "200", description = "Items of the zero-shot code task. Default: ${DEFAULT-VALUE}.")
    int codeItems;

    @Option(names = "--tiny", description = "Tiny models and short runs: a smoke test of the whole pipeline, not a result.")
    boolean tiny;

    @Option(names = "--fresh", description = "Delete the run directory's models and results first (the prepared data is kept).")
    boolean fresh;

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    private static final String[] PRESETS = {"dense-small", "smoe-small", "dsmoe-small"};
    private static final String PROMPT = "public static int max(int a, int b) {";
    private long start;

    private int seq() {
        return tiny ? 32 : 256;
    }

    private int batch() {
        return tiny ? 2 : 8;
    }

    /** A preset as the quickstart trains it: for --tiny, the same families and size matching at 1/8 of the width. */
    private ModelConfig config(String preset) {
        ModelConfig c = ModelConfig.preset(preset);
        if (!tiny) return c;
        return c.withDEmb(32).withNumLayers(1).withAttention(c.nAtt(), c.nHead(), c.nKv(), 8)
                .withMlp(c.nFfd(), c.dFfd() / 8).withMaxPositions(64);
    }

    /** The train verb's model options for {@link #config}. */
    private List<String> modelOptions(String preset) {
        ModelConfig c = config(preset);
        return List.of("--preset", preset, "--batch", Integer.toString(batch()), "--seq", Integer.toString(seq()),
                "--hidden-size", Integer.toString(c.dEmb()), "--num-hidden-layers", Integer.toString(c.numLayers()),
                "--head-dim", Integer.toString(c.dAtt()), "--expert-intermediate-size", Integer.toString(c.dFfd()),
                "--max-position-embeddings", Integer.toString(c.maxPositions()));
    }

    /** Prompt and decoded tokens of the speed measurement. */
    private InferenceBenchmarks speedBenchmark(int warmup, int repeats, String label) {
        return new InferenceBenchmarks(tiny ? 16 : 128, tiny ? 8 : 64, warmup, repeats, msg -> Terminal.status(label + msg));
    }

    private void say(String fmt, Object... args) {
        Terminal.clearStatus();
        System.err.printf(Locale.ROOT, "[%s] %s%n", Terminal.seconds((System.nanoTime() - start) / 1e9),
                String.format(Locale.ROOT, fmt, args));
    }

    @Override
    public Integer call() throws Exception {
        start = System.nanoTime();
        if (!(minutes > 0)) throw new IllegalArgumentException("--minutes must be > 0");
        Files.createDirectories(dir);
        if (fresh) {
            for (String p : PRESETS) deleteTree(dir.resolve(p));
            for (String f : List.of("results.md", "results.json", "loss_curves.png")) Files.deleteIfExists(dir.resolve(f));
            deleteTree(dir.resolve("sweep"));
        }
        Path data = dir.resolve("data");

        say("1/5 preparing the corpus -> %s", data);
        List<String> prep = new ArrayList<>(List.of("prepare", "--out", data.toString(), "--vocab-size", Integer.toString(vocabSize)));
        if (input != null) prep.addAll(List.of("--input", input.toString()));
        if (tiny) prep.addAll(List.of("--val-fraction", "0.2"));
        if (Main.run(prep.toArray(String[]::new)) != 0) throw new Errors.UserError("preparing the corpus failed (see above)");

        double budget = minutes * 60;
        train(data, 0.70 * budget - elapsed());

        Map<String, Object> results = new LinkedHashMap<>();
        List<Map<String, Object>> rows = new ArrayList<>();
        try (TokenDataset ds = TokenDataset.open(data)) {
            Tokenizer tok = ds.tokenizer();
            List<CodeTask.Item> code = codeTask(ds, tok);
            say("4/5 evaluating and timing each model (%d validation tokens per strategy, %d code-task items)",
                    Perplexity.tokensRead(ds.val().size(), evalTokens), code.size());
            warmUp();
            for (String p : PRESETS) rows.addAll(evaluate(p, ds, code));
            sweep(ds);
        }
        double denseDecode = rows.stream().filter(r -> r.get("model").equals("dense-small"))
                .mapToDouble(r -> (double) r.get("decode_tok_s")).findFirst().orElse(Double.NaN);
        for (Map<String, Object> r : rows) r.put("decode_vs_dense", (double) r.get("decode_tok_s") / denseDecode);
        results.put("rows", rows);
        results.put("completions", completions());

        say("5/5 writing the table and plots");
        List<LossCurves.Curve> curves = new ArrayList<>();
        for (String p : PRESETS) curves.add(LossCurves.read(p, dir.resolve(p).resolve("metrics.jsonl"), 20));
        AtomicFiles.write(dir.resolve("loss_curves.png"), ch -> ch.write(java.nio.ByteBuffer.wrap(
                LossCurves.png("training loss, size-matched models, same tokens", curves))));
        String md = table(rows);
        AtomicFiles.writeString(dir.resolve("results.md"), md);
        AtomicFiles.writeString(dir.resolve("results.json"), JSON.writeValueAsString(results));
        System.out.println();
        System.out.print(md);
        System.out.println();
        @SuppressWarnings("unchecked")
        Map<String, String> comp = (Map<String, String>) results.get("completions");
        comp.forEach((model, text) -> System.out.printf("--- %s (greedy)%n%s%s%n", model, PROMPT, text));
        say("done in %s: %s, %s, %s", Terminal.seconds(elapsed()), dir.resolve("results.md"),
                dir.resolve("loss_curves.png"), dir.resolve("sweep"));
        return 0;
    }

    private double elapsed() {
        return (System.nanoTime() - start) / 1e9;
    }

    /** Trains the three presets for the same number of steps, fitted to the time left. */
    private void train(Path data, double seconds) throws IOException {
        List<String> todo = new ArrayList<>();
        long steps = 0;
        for (String p : PRESETS) {
            Path st = dir.resolve(p).resolve(TrainerState.FILE);
            if (Files.isRegularFile(st)) {
                TrainerState s = TrainerState.fromJson(Files.readString(st));
                steps = Math.max(steps, s.totalSteps());
                if (s.step() >= s.totalSteps()) continue;
            }
            todo.add(p);
        }
        if (todo.isEmpty()) {
            say("2/5 3/5 the three models are trained already (%d steps each); reusing them", steps);
            return;
        }
        if (steps == 0) {
            say("2/5 timing one training step of each model to share the %.1f minutes of training", seconds / 60);
            double perStep = 0;
            int vocab;
            try (TokenDataset ds = TokenDataset.open(data)) {
                vocab = ds.vocabSize();
            }
            for (String p : PRESETS) perStep += stepSeconds(p, vocab);
            steps = Math.max(tiny ? 4 : 20, (long) (seconds / (perStep * 1.25))); // optimizer, evaluation, checkpoints
            say("   %d steps of %d tokens per model (%.1f s per step for all three)", steps, batch() * seq(), perStep);
        }
        for (String p : todo) {
            Path out = dir.resolve(p);
            boolean resume = Files.isRegularFile(out.resolve(TrainerState.FILE));
            say("3/5 training %s%s", p, resume ? " (resuming)" : "");
            List<String> args = new ArrayList<>(List.of("train", "--data", data.toString(), "--out", out.toString()));
            if (resume) {
                args.addAll(List.of("--resume", out.toString(), "--batch", Integer.toString(batch()), "--seq", Integer.toString(seq())));
            } else {
                args.addAll(modelOptions(p));
                args.addAll(List.of("--steps", Long.toString(steps), "--eval-every", Long.toString(Math.max(1, steps / 5)),
                        "--save-every", Long.toString(Math.max(10, steps / 4)), "--eval-batches", "4"));
            }
            if (Main.run(args.toArray(String[]::new)) != 0) throw new Errors.UserError("training " + p + " failed (see above)");
        }
    }

    /** Seconds of one forward + backward of a preset at the quickstart's batch (after one warm-up pass). */
    private double stepSeconds(String preset, int vocab) {
        ParamLayout layout = ParamLayout.of(config(preset).withVocabSize(vocab).validate());
        MemoryCheck.training(layout.config(), null, batch(), seq());
        float[] p = layout.newBuffer();
        Init.initialize(layout, p, 1);
        Transformer t = new Transformer(layout, p, layout.newBuffer());
        int n = batch() * seq();
        int[] in = new int[n], tgt = new int[n];
        SplittableRandom r = new SplittableRandom(1);
        for (int i = 0; i < n; i++) {
            in[i] = r.nextInt(vocab);
            tgt[i] = r.nextInt(vocab);
        }
        // Warm the JIT first: cold passes take up to three times as long and would shrink the
        // budget (measured: 0.6 s per step after 3 passes against 0.4 s in the real run).
        for (int i = 0; i < (tiny ? 2 : 8); i++) t.forwardBackward(in, tgt, batch(), seq(), 1f);
        double best = Double.MAX_VALUE;
        for (int i = 0; i < 3; i++) {
            long t0 = System.nanoTime();
            t.forwardBackward(in, tgt, batch(), seq(), 1f);
            best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
        return best;
    }

    private List<CodeTask.Item> codeTask(TokenDataset ds, Tokenizer tok) {
        CodeTask.Options o = CodeTask.Options.DEFAULTS.withItems(codeItems);
        if (tiny) o = new CodeTask.Options(Math.min(codeItems, 20), 8, 4, 3, 1234);
        try {
            return CodeTask.build(ds.val(), tok.endOfTextId(), o, id -> tok.tokenBytes(id).length);
        } catch (IllegalArgumentException e) {
            say("note: no code task: %s", e.getMessage());
            return List.of();
        }
    }

    /** The strategies each model is reported under: DS-MoE dense and threshold (ε 0.48 on the MLP, MoA dense). */
    private static List<String> strategies(String preset) {
        return switch (preset) {
            case "dsmoe-small" -> List.of("dense", "threshold:" + dev.dsmoe.eval.Strategies.PAPER_EPSILON);
            default -> List.of("default");
        };
    }

    private List<Map<String, Object>> evaluate(String preset, TokenDataset ds, List<CodeTask.Item> code) throws IOException {
        Path modelDir = dir.resolve(preset);
        Path cache = modelDir.resolve("quickstart-eval.json");
        long step = TrainerState.fromJson(Files.readString(modelDir.resolve(TrainerState.FILE))).step();
        if (Files.isRegularFile(cache)) {
            var node = JSON.readTree(Files.readString(cache));
            if (node.path("step").asLong() == step && node.path("eval_tokens").asLong() == evalTokens) {
                List<Map<String, Object>> rows = new ArrayList<>();
                for (var r : node.get("rows")) rows.add(JSON.convertValue(r, Map.class));
                return rows;
            }
        }
        List<Map<String, Object>> rows = new ArrayList<>();
        try (InferenceModel m = InferenceModel.load(modelDir, MatVec.DType.F32)) {
            ModelConfig c = m.config();
            int seq = Math.min(seq(), c.maxPositions());
            for (String s : strategies(preset)) {
                ExpertSelection sel = ExpertSelection.parse(s, c);
                Engine e = new Engine(m, sel);
                Perplexity.Result ppl = Perplexity.evaluate(e, ds.val(), seq, evalTokens,
                        (done, total, sec) -> Terminal.status(String.format(Locale.ROOT, "%s %s: perplexity %d/%d tokens",
                                preset, sel, done, total)));
                MultipleChoice.Result mc = code.isEmpty() ? null : MultipleChoice.evaluate("code", e, CodeTask.tokenItems(code),
                        (done, total, sec) -> Terminal.status(String.format(Locale.ROOT, "%s %s: code task %d/%d", preset, sel, done, total)));
                InferenceBenchmarks.Row speed = speedBenchmark(3, 3, preset + " ").run(preset, m, List.of(s)).getFirst();
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("model", preset);
                r.put("strategy", sel.toString());
                r.put("val_loss", ppl.loss());
                r.put("val_ppl", ppl.perplexity());
                r.put("val_tokens", ppl.tokensScored());
                r.put("code_acc", mc == null ? Double.NaN : mc.acc());
                r.put("code_acc_norm", mc == null ? Double.NaN : mc.accNorm());
                r.put("code_items", mc == null ? 0 : mc.items());
                r.put("total_params", c.totalParams());
                r.put("non_embedding_params", c.nonEmbeddingParams());
                r.put("active_params_per_token", ppl.stats().activeParamsPerToken());
                r.put("active_attention_experts", ppl.stats().meanActiveAttention());
                r.put("active_mlp_experts", ppl.stats().meanActiveMlp());
                r.put("active_hidden_pct", ppl.stats().activeHiddenPercent());
                r.put("prefill_tok_s", speed.prefillTokensPerSecond());
                r.put("decode_tok_s", speed.decodeTokensPerSecond());
                rows.add(r);
                Terminal.clearStatus();
                say("   %s %-22s ppl %.2f  code acc %.1f%%  active hidden %.0f%%  decode %.0f tok/s", preset, sel,
                        ppl.perplexity(), 100 * (mc == null ? Double.NaN : mc.acc()), ppl.stats().activeHiddenPercent(),
                        speed.decodeTokensPerSecond());
            }
        }
        Map<String, Object> saved = new LinkedHashMap<>();
        saved.put("step", step);
        saved.put("eval_tokens", evalTokens);
        saved.put("rows", rows);
        AtomicFiles.writeString(cache, JSON.writeValueAsString(saved));
        return rows;
    }

    /** Untimed decode and prefill on every model first, so the JIT does not bill its work to the first row. */
    private void warmUp() throws IOException {
        for (String p : PRESETS) {
            try (InferenceModel m = InferenceModel.load(dir.resolve(p), MatVec.DType.F32)) {
                speedBenchmark(2, 1, "JIT warm-up ").run(p, m, strategies(p));
            }
        }
    }

    /** Perplexity of DS-MoE against active parameters over threshold ε (MLP routers; MoA dense). */
    private void sweep(TokenDataset ds) throws IOException {
        Path out = dir.resolve("sweep");
        if (Files.isDirectory(out) && Files.exists(out.resolve(Sweep.baseName(false) + ".png"))) return;
        say("   DS-MoE threshold sweep -> %s", out);
        try (InferenceModel m = InferenceModel.load(dir.resolve("dsmoe-small"), MatVec.DType.F32)) {
            int seq = Math.min(seq(), m.config().maxPositions());
            long limit = Math.max(seq + 1, evalTokens / 2);
            List<Sweep.Point> pts = Sweep.run(sel -> Perplexity.evaluate(new Engine(m, sel), ds.val(), seq, limit,
                    (d, t, s) -> Terminal.status("sweep " + sel + " " + d + "/" + t)), Sweep.DEFAULT_EPS, false);
            Files.createDirectories(out);
            Sweep.write(out, "DS-MoE (dsmoe-small): perplexity vs active parameters", pts, false);
        }
    }

    private Map<String, String> completions() throws IOException {
        Map<String, String> out = new LinkedHashMap<>();
        for (String p : PRESETS) {
            Path d = dir.resolve(p);
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

    private static String table(List<Map<String, Object>> rows) {
        StringBuilder sb = new StringBuilder();
        sb.append("| model | strategy | val ppl | code acc | params (non-emb.) | active params/token | active hidden | prefill tok/s | decode tok/s | decode vs Dense |\n");
        sb.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Map<String, Object> r : rows) {
            sb.append(String.format(Locale.ROOT, "| %s | %s | %.2f | %.1f%% | %.2fM (%.2fM) | %.2fM | %.0f%% | %.0f | %.0f | %.2f |%n",
                    r.get("model"), r.get("strategy"), num(r, "val_ppl"), 100 * num(r, "code_acc"),
                    num(r, "total_params") / 1e6, num(r, "non_embedding_params") / 1e6,
                    num(r, "active_params_per_token") / 1e6, num(r, "active_hidden_pct"),
                    num(r, "prefill_tok_s"), num(r, "decode_tok_s"), num(r, "decode_vs_dense")));
        }
        return sb.toString();
    }

    private static double num(Map<String, Object> r, String k) {
        Object v = r.get(k);
        return v instanceof Number n ? n.doubleValue() : Double.NaN;
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var s = Files.walk(p)) {
            for (Path x : s.sorted(java.util.Comparator.reverseOrder()).toList()) Files.delete(x);
        }
    }
}
