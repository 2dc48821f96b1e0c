package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.bench.InferenceBenchmarks;
import dev.dsmoe.bench.KernelBenchmarks;
import dev.dsmoe.data.TokenDataset;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelPresets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToDoubleFunction;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code ./dsmoe bench infer}: prefill and decode tokens/s under expert selections, with weight bandwidth. */
@Command(name = "infer", mixinStandardHelpOptions = true,
        description = {"Inference throughput: prefill tokens/s and single-stream decode tokens/s of a model directory",
                "or of presets with random weights, under each expert selection (medians over --repeats),",
                "with the active experts, the weight bytes one decoded token reads and the GB/s that implies."})
final class BenchInferCommand implements Callable<Integer> {

    @Option(names = "--presets", split = ",", defaultValue = "dense-small,dsmoe-small",
            description = "Comma-separated presets with random weights. Default: ${DEFAULT-VALUE}.")
    List<String> presets;

    @Option(names = "--model", paramLabel = "DIR",
            description = {"A model directory (config.json + model.safetensors; quantized or not) instead of presets.",
                    "Repeat it to time several models together, round by round (e.g. a Dense and a DS-MoE model trained on the same data)."})
    List<Path> models;

    @Option(names = "--data", paramLabel = "DIR",
            description = {"With --model: prompt and decoded tokens from the start of DIR's val.bin (teacher-forced) instead of random ids, "
                    + "so a threshold selection keeps as many experts as real text makes it.",
                    "Default: the data directory the (first) model's trainer_state.json names, when it has a val.bin; else random ids."})
    Path data;

    @Option(names = "--strategies", split = ";", defaultValue = "default;top-k:4;top-k:att=2,mlp=4",
            description = {"Semicolon-separated expert selections; the first is the speed-up reference.",
                    "Forms: " + ExpertSelection.FORMS + ". Default: ${DEFAULT-VALUE}."})
    List<String> strategies;

    @Mixin
    ComputeOptions.Dtype dtype;

    @Option(names = "--prompt", defaultValue = "128", description = "Prompt tokens. Default: ${DEFAULT-VALUE}.")
    int prompt;

    @Option(names = "--profile", description = {"Also time --repeats extra prefill and decode passes per selection with the weight products timed (medians):",
            "microseconds a decoded and a prompt token spend in them and outside them (attention, norms, routing, bookkeeping),",
            "and by layer phase (K/V, routers, query products, attention, output products, MLP products, activation, head)."})
    boolean profile;

    @Option(names = "--chunk", defaultValue = "" + Engine.DEFAULT_CHUNK, description = "Prompt tokens per prefill step (the engine's and the server's default). Default: ${DEFAULT-VALUE}.")
    int chunk;

    @Option(names = "--decode", defaultValue = "64", description = "Decoded tokens. Default: ${DEFAULT-VALUE}.")
    int decode;

    @Option(names = "--repeats", defaultValue = "3", description = "Timed repeats (median). Default: ${DEFAULT-VALUE}.")
    int repeats;

    @Option(names = "--warmup", defaultValue = "3", description = "Untimed repeats first, at least; the warm-up also lasts at least 1 s and until the JIT is quiet (at most 30 s). Default: ${DEFAULT-VALUE}.")
    int warmup;

    @Option(names = "--json", description = "One JSON object per row instead of the table.")
    boolean json;

    @Option(names = "--probe", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = {"After the rows, the memory read probe (4 streams a thread over 256 MiB, as 'bench kernels --quick'),",
                    "and each decode's GB/s as a fraction of it (--no-probe: without). Default: on."})
    boolean probe;

    /** The read probe's result in {@code --json} output: one object after the rows. */
    record ReadProbe(double readProbeGBPerSecond) {}

    @Option(names = "--batch", split = ",", paramLabel = "B",
            description = {"Batched decode instead: B sequences decode together (one step per token for all of them),",
                    "for each comma-separated B; reports aggregate and per-sequence tokens/s. E.g. --batch 1,4,16,64."})
    List<Integer> batch;

    @Option(names = "--plot", paramLabel = "PNG", description = "With --batch: also plot aggregate tokens/s against B into this PNG.")
    Path plot;

    /** Whether the presets' models were timed together (round by round), not model after model. */
    private boolean together;

    @Override
    public Integer call() throws Exception {
        InferenceBenchmarks b = new InferenceBenchmarks(prompt, decode, warmup, repeats,
                json ? s -> { } : s -> Terminal.status("inference " + s)).chunk(chunk).profile(profile);
        if (plot != null && batch == null) throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--plot needs --batch");
        if (data != null && models == null) throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--data needs --model");
        if (batch != null) return batched(b);
        List<InferenceBenchmarks.Row> rows = new ArrayList<>();
        String weights = weightsLabel();
        String tokens = RANDOM_IDS;
        if (models != null) {
            List<InferenceModel> loaded = loadModels(1);
            try {
                tokens = useText(b, loaded, prompt + decode);
                rows.addAll(b.runTogether(modelSubjects(loaded)));
            } finally {
                for (InferenceModel m : loaded) m.close();
            }
        } else {
            for (String p : presets) MemoryCheck.randomModel(ModelPresets.get(p), dtype.get(), prompt + decode);
            together = presets.size() > 1
                    && MemoryCheck.randomModelsFitTogether(presets.stream().map(ModelPresets::get).toList(), dtype.get(), prompt + decode, 1);
            if (together) {
                rows.addAll(withModelsTogether(b::runTogether));
            } else {
                for (String p : presets) {
                    try (InferenceModel m = InferenceBenchmarks.randomModel(p, dtype.get())) {
                        rows.addAll(b.run(p, m, strategies));
                    }
                }
            }
        }
        // measured right after the rows (the models are closed by now), so that its minute is theirs
        double read = probe ? new KernelBenchmarks(1, 3, true, json ? s -> { } : s -> Terminal.status("inference " + s)).memoryRead().value()
                : Double.NaN;
        Terminal.clearStatus();
        if (json) {
            ObjectMapper om = new ObjectMapper();
            for (InferenceBenchmarks.Row r : rows) System.out.println(om.writeValueAsString(r));
            for (InferenceBenchmarks.Profile p : b.profiles()) System.out.println(om.writeValueAsString(p));
            if (probe) System.out.println(om.writeValueAsString(new ReadProbe(read)));
            return 0;
        }
        System.out.printf(Locale.ROOT, "prompt %d (chunks of %d), decode %d tokens (%s), %s weights, %d threads, kernels %s%n", prompt,
                chunk, decode, tokens, weights, ComputeOptions.threads(), ComputeOptions.kernels());
        System.out.println("inference GEMM products: " + dev.dsmoe.kernels.OneDnn.describe());
        System.out.println(timingLine());
        if (probe) System.out.printf(Locale.ROOT, "read probe: %.1f GB/s (4 streams a thread over 256 MiB, right after the rows)%n", read);
        System.out.println("| model | selection | prefill tok/s | decode tok/s | decode vs first | MoA active | MLP active "
                + "| active hidden % | MB read / token | decode GB/s |" + (probe ? " of probe |" : ""));
        System.out.println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + (probe ? "---:|" : ""));
        for (InferenceBenchmarks.Row r : rows) {
            System.out.printf(Locale.ROOT, "| %s | %s | %.0f | %.1f | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f |%s%n",
                    r.model(), r.selection(), r.prefillTokensPerSecond(), r.decodeTokensPerSecond(),
                    r.decodeSpeedupToFirst(), r.meanActiveAttention(), r.meanActiveMlp(), r.activeHiddenPercent(),
                    r.weightBytesPerToken() / 1e6, r.decodeGBPerSecond(),
                    probe ? String.format(Locale.ROOT, " %.2f |", r.decodeGBPerSecond() / read) : "");
        }
        if (profile) {
            profileTable(b.profiles(), "µs per decoded token", InferenceBenchmarks.Profile::stepMicros,
                    InferenceBenchmarks.Profile::productMicros);
            profileTable(b.profiles(), "µs per prompt token (prefill)", InferenceBenchmarks.Profile::prefillMicros,
                    InferenceBenchmarks.Profile::prefillProductMicros);
            phaseTable(b.profiles());
        }
        return 0;
    }

    /** The weight format(s) of the run, for the headers: the models' own (each its stored format or --dtype), or --dtype's. */
    private String weightsLabel() {
        if (models == null) return ComputeOptions.Dtype.label(dtype.get());
        return models.stream().map(d -> ComputeOptions.Dtype.label(dtype.forModel(d))).distinct().collect(java.util.stream.Collectors.joining("/"));
    }

    /** The --model directories loaded (each checked alone, then all of them together, against the memory), in order. */
    private List<InferenceModel> loadModels(int sequences) throws java.io.IOException {
        List<MatVec.DType> types = models.stream().map(dtype::forModel).toList();
        for (int i = 0; i < models.size(); i++) MemoryCheck.model(models.get(i), types.get(i), prompt + decode, sequences);
        if (models.size() > 1) MemoryCheck.models(models, types, prompt + decode, sequences);
        List<InferenceModel> loaded = new ArrayList<>();
        try {
            for (int i = 0; i < models.size(); i++) loaded.add(InferenceModel.load(models.get(i), types.get(i)));
        } catch (java.io.IOException | RuntimeException e) {
            for (InferenceModel m : loaded) m.close();
            throw e;
        }
        return loaded;
    }

    /** Every (--model, strategy) pair, named by the model directory's name. */
    private List<InferenceBenchmarks.Subject> modelSubjects(List<InferenceModel> loaded) {
        List<InferenceBenchmarks.Subject> subjects = new ArrayList<>();
        for (int i = 0; i < loaded.size(); i++) {
            for (String st : strategies) subjects.add(new InferenceBenchmarks.Subject(models.get(i).getFileName().toString(), loaded.get(i), st));
        }
        return subjects;
    }

    /** How the rows were timed, for the header. */
    private String timingLine() {
        boolean several = models != null ? models.size() > 1 : presets.size() > 1;
        String how = !several ? "the selections round by round"
                : models != null || together ? "all rows round by round (one run of each per round)"
                : "model after model (the models do not fit in memory together)";
        return "timing: " + how + ", medians of " + repeats;
    }

    /** Every preset's random model built at once, {@code run} given every (preset, strategy); the models closed after. */
    private <R> List<R> withModelsTogether(java.util.function.Function<List<InferenceBenchmarks.Subject>, List<R>> run) {
        List<InferenceModel> built = new ArrayList<>();
        try {
            List<InferenceBenchmarks.Subject> subjects = new ArrayList<>();
            for (String p : presets) {
                Terminal.status("inference: building " + p + " (" + ComputeOptions.Dtype.label(dtype.get()) + ")");
                InferenceModel m = InferenceBenchmarks.randomModel(p, dtype.get());
                built.add(m);
                for (String s : strategies) subjects.add(new InferenceBenchmarks.Subject(p, m, s));
            }
            return run.apply(subjects);
        } finally {
            for (InferenceModel m : built) m.close();
        }
    }

    /** A profile table: per selection, a token's microseconds, those in the weight products, the rest. */
    private static void profileTable(List<InferenceBenchmarks.Profile> profiles, String what,
                                     ToDoubleFunction<InferenceBenchmarks.Profile> all,
                                     ToDoubleFunction<InferenceBenchmarks.Profile> inProducts) {
        System.out.println();
        System.out.println("| model | selection | " + what + " | in weight products | outside them | outside share |");
        System.out.println("|---|---|---:|---:|---:|---:|");
        for (InferenceBenchmarks.Profile p : profiles) {
            double step = all.applyAsDouble(p), products = inProducts.applyAsDouble(p), outside = step - products;
            System.out.printf(Locale.ROOT, "| %s | %s | %.0f | %.0f | %.0f | %.0f%% |%n", p.model(), p.selection(), step,
                    products, outside, 100 * outside / step);
        }
    }

    /**
     * The profile by layer phase: per selection, a row per {@link Engine.Phase} (summed over the
     * layers) with µs per decoded token and per prompt token and each one's share, then what the
     * phases leave out (embedding lookup, bookkeeping).
     */
    private static void phaseTable(List<InferenceBenchmarks.Profile> profiles) {
        System.out.println();
        System.out.println("| model | selection | phase | decode µs / token | share | prefill µs / prompt token | share |");
        System.out.println("|---|---|---|---:|---:|---:|---:|");
        for (InferenceBenchmarks.Profile p : profiles) {
            double stepLeft = p.stepMicros(), preLeft = p.prefillMicros();
            for (Engine.Phase ph : Engine.Phase.values()) {
                double st = p.stepPhaseMicros().get(ph.key()), pr = p.prefillPhaseMicros().get(ph.key());
                stepLeft -= st;
                preLeft -= pr;
                phaseRow(p, ph.label(), st, pr);
            }
            phaseRow(p, "other (embedding, bookkeeping)", stepLeft, preLeft);
        }
    }

    private static void phaseRow(InferenceBenchmarks.Profile p, String phase, double step, double prefill) {
        System.out.printf(Locale.ROOT, "| %s | %s | %s | %.1f | %.1f%% | %.1f | %.1f%% |%n", p.model(), p.selection(), phase, step,
                100 * step / p.stepMicros(), prefill, 100 * prefill / p.prefillMicros());
    }

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /** The header's word for runs without a text (presets, or a model without validation data). */
    private static final String RANDOM_IDS = "random ids";

    /**
     * Gives {@code b} the text of --data (or of the data the model was trained on, when its
     * directory has a val.bin), its first {@code tokens} tokens; says which tokens the runs read.
     */
    private String useText(InferenceBenchmarks b, List<InferenceModel> loaded, int tokens) throws java.io.IOException {
        Path dir = data != null ? data : dev.dsmoe.train.TrainData.dataDirOf(models.getFirst());
        if (data == null && (dir == null || !java.nio.file.Files.isRegularFile(dir.resolve(TokenDataset.VAL)))) return RANDOM_IDS;
        ValidationData.require(dir);
        try (TokenDataset ds = TokenDataset.open(dir)) {
            for (int i = 0; i < loaded.size(); i++) {
                int vocab = loaded.get(i).config().vocabSize();
                if (ds.vocabSize() != vocab) {
                    throw new Errors.UserError((data != null ? "--data " : "the model's data ") + dir + " was tokenized with "
                            + ds.vocabSize() + " ids but " + (loaded.size() > 1 ? models.get(i) + "'s" : "the model's") + " vocab_size is "
                            + vocab + "; pass the data the model" + (loaded.size() > 1 ? "s were" : " was") + " trained on");
                }
            }
            if (ds.val().size() == 0) {
                if (data == null) return RANDOM_IDS;
                throw new Errors.UserError("--data " + dir + ": its " + TokenDataset.VAL + " holds no tokens (prepare it with a larger --val-fraction)");
            }
            b.text(ds.val().head(tokens));
        }
        return dir.resolve(TokenDataset.VAL) + ", teacher-forced";
    }

    private int batched(InferenceBenchmarks b) throws Exception {
        int most = batch.stream().mapToInt(Integer::intValue).max().orElse(1);
        if (batch.stream().anyMatch(x -> x < 1)) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--batch sizes must be >= 1, got " + batch);
        }
        List<InferenceBenchmarks.BatchRow> rows = new ArrayList<>();
        String weights = weightsLabel();
        String tokens = RANDOM_IDS;
        if (models != null) {
            List<InferenceModel> loaded = loadModels(most);
            try {
                tokens = useText(b, loaded, (prompt + decode) * most);
                rows.addAll(b.runBatchedTogether(modelSubjects(loaded), batch));
            } finally {
                for (InferenceModel m : loaded) m.close();
            }
        } else {
            for (String p : presets) MemoryCheck.randomModel(ModelPresets.get(p), dtype.get(), prompt + decode, most);
            together = presets.size() > 1 && MemoryCheck.randomModelsFitTogether(presets.stream().map(ModelPresets::get).toList(),
                    dtype.get(), prompt + decode, most);
            if (together) {
                rows.addAll(withModelsTogether(subjects -> b.runBatchedTogether(subjects, batch)));
            } else {
                for (String p : presets) {
                    try (InferenceModel m = InferenceBenchmarks.randomModel(p, dtype.get())) {
                        rows.addAll(b.runBatched(p, m, strategies, batch));
                    }
                }
            }
        }
        Terminal.clearStatus();
        if (plot != null) {
            byte[] png = dev.dsmoe.bench.BatchPlot.png("batched decode, " + weights + " weights, prompt " + prompt
                    + ", " + ComputeOptions.threads() + " threads", rows);
            dev.dsmoe.io.AtomicFiles.write(plot, ch -> {
                java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(png);
                while (bb.hasRemaining()) ch.write(bb);
            });
        }
        if (json) {
            ObjectMapper om = new ObjectMapper();
            for (InferenceBenchmarks.BatchRow r : rows) System.out.println(om.writeValueAsString(r));
            return 0;
        }
        System.out.printf(Locale.ROOT, "batched decode: prompt %d, decode %d tokens per sequence (%s), %s weights, %d threads, kernels %s%n",
                prompt, decode, tokens, weights, ComputeOptions.threads(), ComputeOptions.kernels());
        System.out.println(timingLine());
        System.out.println("| model | selection | B | aggregate tok/s | per-sequence tok/s | vs first selection | MoA active "
                + "| MLP active | active hidden % |");
        System.out.println("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for (InferenceBenchmarks.BatchRow r : rows) {
            System.out.printf(Locale.ROOT, "| %s | %s | %d | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f |%n", r.model(), r.selection(),
                    r.batch(), r.aggregateTokensPerSecond(), r.perSequenceTokensPerSecond(), r.speedupToFirst(),
                    r.meanActiveAttention(), r.meanActiveMlp(), r.activeHiddenPercent());
        }
        if (plot != null) System.out.println("plot: " + plot);
        return 0;
    }
}
