package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.dist.Dist;
import dev.dsmoe.dist.Mpi;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamCounts;
import dev.dsmoe.train.BatchSource;
import dev.dsmoe.train.TrainData;
import dev.dsmoe.train.Trainer;
import dev.dsmoe.train.TrainerState;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ./dsmoe train}: trains a Dense, SMoE or DS-MoE model on prepared token shards. */
@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Train a model on token shards from 'dsmoe prepare'.",
                "The model is a preset (--preset), optionally turned into a size-matched family (--family),",
                "with any config.json key overridden by its own option (e.g. --hidden-size 512, --aux-loss-weight-mlp 1e-3).",
                "The budget is --steps, --tokens or --minutes. Checkpoints (Hugging Face layout) go to --out;",
                "--resume DIR continues a run bit-identically.",
                "",
                "--resume DIR takes the run's settings from DIR/trainer_state.json, not from",
                "the defaults: seed, batch, seq, grad-accum, learning rates, warm-up, weight",
                "decay, clip, model options, --kernels and --threads (both change the",
                "rounding; DSMOE_KERNELS/DSMOE_THREADS do not apply), and the data, known by",
                "a fingerprint of its meta.json (name a moved data directory with --data).",
                "Any of these given with a value other than the saved one is refused.",
                "--save-every, --eval-every, --eval-batches and --json keep their saved",
                "values unless given; --stop-after is this invocation's. A larger budget",
                "(--steps or --tokens: the new total; --minutes: the total time, spent time",
                "included) extends the run: the cosine keeps its phase, so the rate goes on",
                "from where it is and reaches --min-lr at the new end. The same budget or",
                "none changes nothing; a smaller one is refused.",
                "",
                "Data-parallel: 'mpirun -np K ./dsmoe train ...' (or srun) trains on K ranks;",
                "--batch is per rank, a step is K x --grad-accum micro-batches and equals one",
                "process with --grad-accum K x A. Rank 0 prints and writes the checkpoint."})
final class TrainCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--data", paramLabel = "DIR", description = "Token shards and tokenizer from 'dsmoe prepare' (train.bin, val.bin, meta.json, tokenizer.json).")
    Path data;

    @Option(names = "--out", paramLabel = "DIR", description = "Where checkpoints and metrics.jsonl go (default: the --resume directory).")
    Path out;

    @Option(names = "--resume", paramLabel = "DIR", description = "Continue the run checkpointed in DIR, with its saved settings (see above).")
    Path resume;

    @Option(names = "--preset", defaultValue = "dsmoe-small", description = "Model preset: ${COMPLETION-CANDIDATES}. Default: ${DEFAULT-VALUE}.",
            completionCandidates = Presets.class)
    String preset;

    @Option(names = "--family", paramLabel = "dense|smoe|dsmoe", description = {"Size-matched variant of the preset (METHOD 2.5): DS-MoE keeps the query heads and MLP width",
            "split into experts, SMoE splits only the MLP and routes top-k."})
    String family;

    @Option(names = "--experts", paramLabel = "ATT,MLP", split = ",", description = "Expert counts for --family (default dsmoe 4,16; smoe 1,8).")
    int[] experts;

    @CommandLine.ArgGroup(exclusive = true, multiplicity = "0..1")
    Budget budget;

    static final class Budget {
        @Option(names = "--steps", description = "Optimizer steps to train.") long steps;
        @Option(names = "--tokens", description = "Tokens to train on (rounded up to whole steps).") long tokens;
        @Option(names = "--minutes", description = "Wall-clock budget; the step count is fixed after timing two steps.") double minutes;
    }

    @Option(names = "--batch", defaultValue = "8", description = "Sequences per micro-batch. Default: ${DEFAULT-VALUE}.") int batch;
    @Option(names = "--seq", description = "Tokens per sequence (default: min(256, max_position_embeddings)).") Integer seq;
    @Option(names = "--grad-accum", defaultValue = "1", description = "Micro-batches per optimizer step. Default: ${DEFAULT-VALUE}.") int gradAccum;
    @Option(names = "--lr", defaultValue = "1e-3", description = "Peak learning rate. Default: ${DEFAULT-VALUE}.") double lr;
    @Option(names = "--min-lr", description = "Final learning rate of the cosine (default: lr/10).") Double minLr;
    @Option(names = "--warmup", defaultValue = "-1", description = "Warm-up steps (default: 5%% of the steps, at most 200).") long warmup;
    @Option(names = "--weight-decay", defaultValue = "0.01", description = "AdamW weight decay on weight matrices (the tied embedding included; not on norm gains). Default: ${DEFAULT-VALUE}.") double weightDecay;
    @Option(names = "--clip", defaultValue = "1.0", description = "Global gradient-norm clip (0: off). Default: ${DEFAULT-VALUE}.") double clip;
    @Option(names = "--seed", defaultValue = "1234", description = "Seed for initialisation and data order. Default: ${DEFAULT-VALUE}.") long seed;
    @Option(names = "--save-every", defaultValue = "200", description = "Checkpoint every N steps (and at the end). Default: ${DEFAULT-VALUE}.") long saveEvery;
    @Option(names = "--eval-every", defaultValue = "100", description = "Validation loss every N steps (0: only at the end). Default: ${DEFAULT-VALUE}.") long evalEvery;
    @Option(names = "--eval-batches", defaultValue = "8", description = "Validation batches per evaluation. Default: ${DEFAULT-VALUE}.") int evalBatches;
    @Option(names = "--stop-after", defaultValue = "0", description = "End this invocation after N steps, checkpointed, keeping the whole budget's schedule (resume later).") long stopAfter;
    @Option(names = "--dist", defaultValue = "auto", paramLabel = "auto|mpi|none",
            description = {"Data-parallel job: mpi (join the MPI job; fails when libmpi does not load), none (one process),",
                    "auto (mpi when started by mpirun or srun, else none). Default: ${DEFAULT-VALUE}."})
    String dist;

    @Option(names = "--json", negatable = true, description = "One JSON object per step on stdout instead of the progress display.") boolean json;

    /** Adds one option per config.json key ("--hidden-size" for hidden_size), so every key can be set. */
    static void addConfigOptions(CommandLine.Model.CommandSpec spec) {
        for (String key : ConfigJson.keys()) {
            if (key.equals("model_type")) continue;
            spec.addOption(CommandLine.Model.OptionSpec.builder("--" + key.replace('_', '-'))
                    .paramLabel("VALUE").type(String.class)
                    .description("config.json " + key + " (overrides the preset)").build());
        }
    }

    static final class Presets implements Iterable<String> {
        @Override
        public java.util.Iterator<String> iterator() {
            return ModelPresets.names().iterator();
        }
    }

    private ModelConfig resolveConfig(int tokenizerVocab) {
        ModelConfig c = ModelPresets.get(preset);
        if (family != null) {
            ModelPresets.Family f = ModelPresets.Family.parse(family);
            int att = experts != null ? experts[0] : f.nAtt();
            int mlp = experts != null && experts.length > 1 ? experts[1] : f.nFfd();
            c = ModelPresets.sizeMatched(c, f, att, mlp);
        }
        boolean vocabGiven = false;
        for (String key : ConfigJson.keys()) {
            if (key.equals("model_type")) continue;
            CommandLine.Model.OptionSpec opt = spec.findOption("--" + key.replace('_', '-'));
            String v = opt == null ? null : opt.getValue();
            if (v != null) {
                c = ConfigJson.with(c, key, v);
                vocabGiven |= key.equals("vocab_size");
            }
        }
        if (!vocabGiven) c = c.toBuilder().vocabSize(tokenizerVocab).build();
        if (c.vocabSize() < tokenizerVocab) {
            throw new IllegalArgumentException("vocab_size " + c.vocabSize() + " is smaller than the tokenizer's "
                    + tokenizerVocab + " tokens in " + data + "; drop --vocab-size or raise it");
        }
        return c.validate();
    }

    /** The job this invocation is a rank of (one process unless --dist or an MPI launcher says otherwise). */
    private Dist job = Dist.single();

    @Override
    public Integer call() throws Exception {
        job = joinJob();
        if (job.size() == 1) return trainOnce();
        if (!given("--kernels") && resume == null) agreeOnKernels();
        Errors.job = job; // errors: see Errors.Handler
        int status = trainOnce();
        job.close();
        Errors.job = null;
        return status;
    }

    /**
     * Every rank computes with rank 0's backend: --kernels auto picks by a measurement, which
     * ranks measuring at once on shared cores could settle differently (and backends round
     * differently). A resumed run takes the saved backend on every rank instead.
     */
    private void agreeOnKernels() {
        boolean java = job.broadcast(job.isRoot() && ComputeOptions.kernels().equals("java") ? 1L : 0L) == 1;
        if (!job.isRoot()) ComputeOptions.useKernels(java ? "java" : "blas");
    }

    /** Joins the MPI job when --dist (or the launcher's environment, with auto) asks for one. */
    private Dist joinJob() {
        boolean mpi = switch (dist) {
            case "auto" -> Mpi.launched(System.getenv());
            case "mpi" -> true;
            case "none" -> false;
            default -> throw new IllegalArgumentException("--dist " + dist + ": use auto, mpi or none");
        };
        if (!mpi) return Dist.single();
        try {
            return Mpi.init();
        } catch (UnsupportedOperationException | LinkageError e) {
            throw new IllegalArgumentException("--dist " + dist + (dist.equals("auto") ? " (started by an MPI launcher)" : "")
                    + ": " + e.getMessage());
        }
    }

    private int trainOnce() throws Exception {
        if (resume == null && out == null) throw new IllegalArgumentException("--out DIR is required (or --resume DIR)");
        if (out == null) out = resume;
        TrainerState saved = resume == null ? null : adoptSavedRun();
        Path dataDir = data;
        if (dataDir == null && saved != null) dataDir = savedDataDir(saved);
        if (dataDir == null) throw new IllegalArgumentException("--data DIR is required: the output of 'dsmoe prepare'");
        try (TrainData td = TrainData.open(dataDir)) {
            if (saved != null) checkSameData(saved, td);
            return train(td, saved);
        }
    }

    private int train(TrainData td, TrainerState saved) throws Exception {
        ModelConfig config = saved != null ? checkModelOptions(ModelFiles.readConfig(resume), td.vocabSize())
                : resolveConfig(td.vocabSize());
        int seqLen = seq != null ? seq : Math.min(256, config.maxPositions());
        if (seqLen > config.maxPositions()) {
            throw new IllegalArgumentException("--seq " + seqLen + " exceeds max_position_embeddings " + config.maxPositions());
        }
        long steps = budget == null ? 0 : budget.steps;
        if (budget != null && budget.tokens > 0) steps = Math.ceilDiv(budget.tokens, (long) batch * seqLen * gradAccum * job.size());
        double minutes = budget == null ? 0 : budget.minutes;
        if (resume == null && steps == 0 && !(minutes > 0)) {
            throw new IllegalArgumentException("give a budget: --steps N, --tokens N or --minutes M");
        }
        String budgetGiven = budgetGiven();
        if (saved != null) {
            if (steps > 0 && steps < saved.totalSteps()) {
                String inSteps = given("--steps") ? "" : " (" + steps + (steps == 1 ? " step)" : " steps)");
                throw new IllegalArgumentException("--resume " + resume + ": " + budgetGiven + inSteps + " is fewer than the run's saved "
                        + saved.totalSteps() + " steps; a budget can only be extended (--stop-after N ends this invocation early)");
            }
            // The same time budget again is no extension: the step count it gave stays.
            String last = saved.lastBudget().given();
            if (minutes > 0 && last.startsWith("--minutes ") && Double.parseDouble(last.substring(10)) == minutes) minutes = 0;
        }
        BatchSource trainSource = td.train(batch, seqLen, seed);
        BatchSource val = td.validation(batch, seqLen);
        int evalN = (int) Math.min(evalBatches, td.validationBatches(batch, seqLen));
        if (val == null && job.isRoot()) System.err.println("dsmoe train: note: the validation shard is shorter than one window; no validation loss");
        Trainer.Options o = new Trainer.Options(batch, seqLen, gradAccum, lr, minLr != null ? minLr : lr / 10, warmup,
                weightDecay, clip, seed, steps, minutes, saveEvery, val == null ? 0 : evalEvery, Math.max(1, evalN), stopAfter,
                budgetGiven, json);
        MemoryCheck.training(config, resume != null, batch, seqLen);
        Trainer trainer;
        if (resume != null) {
            trainer = Trainer.resume(resume, saved, config, o, job, trainSource, val, out, td.tokenizer(), td.description(),
                    td.fingerprint());
        } else {
            if (job.isRoot() && Files.exists(out.resolve(dev.dsmoe.train.TrainerState.FILE))) {
                throw new IllegalArgumentException("--out " + out + " already holds a training run; use --resume " + out
                        + " to continue it, or another --out");
            }
            trainer = Trainer.fresh(config, o, job, trainSource, val, out, td.tokenizer(), td.description(), td.fingerprint());
        }
        if (!job.isRoot()) { // rank 0 speaks for the job
            trainer.run(new Trainer.Listener() {});
            return 0;
        }
        ProgressListener listener = new ProgressListener(json, trainer.config(), job);
        trainer.run(listener);
        listener.finish(trainer, out);
        return 0;
    }

    /** The budget as given on the command line (for the run's budget history), or null. */
    private String budgetGiven() {
        for (String name : List.of("--steps", "--tokens", "--minutes")) {
            if (given(name)) return name + " " + matched(name).stringValues().getLast();
        }
        return null;
    }

    /** Whether {@code name} was on the command line (here or, for --kernels and --threads, before the verb). */
    private boolean given(String name) {
        return matched(name) != null;
    }

    private CommandLine.Model.OptionSpec matched(String name) {
        for (CommandLine cl = spec.commandLine(); cl != null; cl = cl.getParent()) {
            CommandLine.ParseResult pr = cl.getParseResult();
            if (pr != null && pr.hasMatchedOption(name)) return pr.matchedOption(name);
        }
        return null;
    }

    /**
     * With --resume: the saved run's settings replace the defaults, an option given with another
     * value than the saved one is refused (all such options in one line), and the saved GEMM
     * backend and thread count are selected. A format-1 state recorded no backend, threads or
     * operational settings: the current ones stay, with a note, and are recorded from now on.
     */
    private TrainerState adoptSavedRun() throws Exception {
        if (!Files.isDirectory(resume)) throw new IllegalArgumentException("--resume " + resume + ": no such directory");
        if (Files.isRegularFile(resume.resolve(ModelFiles.CONFIG))) ModelFiles.requireTrainable(resume); // not a quantized copy
        // In a job rank 0 finishes an interrupted checkpoint change first; the others read after it.
        if (job.isRoot()) Trainer.readState(resume, true);
        job.broadcast(0L);
        TrainerState s = Trainer.readState(resume, false);
        Map<String, String> clashes = new LinkedHashMap<>();
        seed = adopt("--seed", seed, s.seed(), "seed", clashes);
        batch = adopt("--batch", batch, s.batch(), "batch", clashes);
        seq = adopt("--seq", seq, s.seqLen(), "seq", clashes);
        gradAccum = adopt("--grad-accum", gradAccum, s.gradAccum(), "grad-accum", clashes);
        lr = adopt("--lr", lr, s.lr(), "lr", clashes);
        minLr = adopt("--min-lr", minLr, s.minLr(), "min-lr", clashes);
        warmup = adopt("--warmup", warmup, s.warmupSteps(), "warm-up", clashes);
        weightDecay = adopt("--weight-decay", weightDecay, s.weightDecay(), "weight decay", clashes);
        clip = adopt("--clip", clip, s.clip(), "clip", clashes);
        if (!s.legacy()) {
            // Both change the bits (measured: every thread count gives other weights on OpenBLAS,
            // which picks its kernels by each thread's block size; some counts on the Java kernels).
            if (given("--kernels")) adopt("--kernels", ComputeOptions.kernels(), s.kernels(), "kernels", clashes);
            if (given("--threads")) adopt("--threads", ComputeOptions.threads(), s.threads(), "thread count", clashes);
        }
        if (!clashes.isEmpty()) {
            throw new IllegalArgumentException("--resume " + resume + ": " + String.join("; ", clashes.values()) + "; drop "
                    + String.join(", ", clashes.keySet()) + " to continue the run");
        }
        String note = ComputeOptions.useSaved(s, resume, "--resume " + resume, given("--kernels"), given("--threads"));
        if (note != null && job.isRoot()) System.err.println("dsmoe train: note: " + note);
        TrainerState.Operational kept = s.operational(new TrainerState.Operational(saveEvery, evalEvery, evalBatches, json));
        if (!given("--save-every")) saveEvery = kept.saveEvery();
        if (!given("--eval-every")) evalEvery = kept.evalEvery();
        if (!given("--eval-batches")) evalBatches = kept.evalBatches();
        if (!given("--json")) json = kept.json();
        return s;
    }

    /** The saved value; a given option that differs from it is added to {@code clashes}. */
    private <T> T adopt(String option, T current, T saved, String what, Map<String, String> clashes) {
        if (given(option) && !Objects.equals(current, saved)) {
            clashes.put(option, option + " " + matched(option).stringValues().getLast() + " contradicts the run's saved "
                    + what + " " + saved);
        }
        return saved;
    }

    /** The data directory recorded in the checkpoint, which must still be there unless --data names it. */
    private Path savedDataDir(TrainerState s) {
        if (s.data() == null || s.data().isBlank()) {
            throw new IllegalArgumentException("--resume " + resume + ": the run recorded no data directory; give --data DIR");
        }
        Path dir = Path.of(s.data());
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException("--resume " + resume + ": the run's data directory " + dir
                    + " is gone; if it moved, name its new place with --data DIR");
        }
        return dir;
    }

    /** The data is the run's own when its meta.json fingerprint is the saved one, wherever it lies. */
    private void checkSameData(TrainerState s, TrainData td) {
        if (s.dataFingerprint() == null || s.dataFingerprint().equals(td.fingerprint())) return;
        String which = data != null ? "--data " + data + " holds" : "the run's data directory " + td.dir() + " now holds";
        throw new IllegalArgumentException("--resume " + resume + ": " + which + " other data than the run was trained on "
                + "(its meta.json differs from the one saved from " + s.data() + "); give --data the run's own prepared data");
    }

    /** With --resume: the checkpoint's config.json; model options are only accepted when they agree with it. */
    private ModelConfig checkModelOptions(ModelConfig saved, int tokenizerVocab) {
        String savedJson = ConfigJson.toJson(saved);
        for (String key : ConfigJson.keys()) {
            String option = "--" + key.replace('_', '-');
            CommandLine.Model.OptionSpec opt = spec.findOption(option);
            if (opt == null || opt.getValue() == null || ConfigJson.with(saved, key, opt.getValue()).equals(saved)) continue;
            String was;
            try {
                was = new ObjectMapper().readTree(savedJson).path(key).asText();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            throw new IllegalArgumentException("--resume " + resume + ": " + option + " " + opt.getValue()
                    + " contradicts the run's saved " + key + " " + was + "; drop " + option + " to continue the run");
        }
        for (String option : List.of("--preset", "--family", "--experts")) {
            if (given(option) && !resolveConfig(tokenizerVocab).equals(saved)) {
                throw new IllegalArgumentException("--resume " + resume + ": " + option + " "
                        + String.join(",", matched(option).stringValues()) + " gives another model than the run's saved "
                        + resume.resolve("config.json") + "; drop " + option + " to continue the run");
            }
        }
        return saved;
    }

    /** "dense d=512 layers=8 N_att=1 N_ffd=1": a model's family and shape in one line. */
    static String describe(ModelConfig c) {
        String fam = c.nAtt() == 1 && c.nFfd() == 1 ? "dense"
                : c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K ? "smoe (top-" + c.trainingTopK() + ")" : "ds-moe";
        return fam + " d=" + c.dEmb() + " layers=" + c.numLayers() + " N_att=" + c.nAtt() + " N_ffd=" + c.nFfd();
    }

    /** Progress bar (interactive), periodic lines (logs) or JSON lines (--json). */
    static final class ProgressListener implements Trainer.Listener {
        private final boolean json;
        private final ModelConfig config;
        private final ObjectMapper om = new ObjectMapper();
        private final Terminal.Progress log = new Terminal.Progress("", true);
        private final Dist job;

        ProgressListener(boolean json, ModelConfig config) {
            this(json, config, Dist.single());
        }

        ProgressListener(boolean json, ModelConfig config, Dist job) {
            this.json = json;
            this.config = config;
            this.job = job;
        }

        @Override
        public void onStart(long step, long totalSteps, Trainer.Options o) {
            if (json) return;
            ParamCounts counts = ParamCounts.of(config);
            System.err.printf(Locale.ROOT, "dsmoe train: %s, %.2fM parameters (%.2fM non-embedding), %d steps of %d tokens%s%s%n",
                    describe(config), counts.total() / 1e6, counts.nonEmbedding() / 1e6, totalSteps,
                    o.tokensPerStep() * job.size(), job.size() > 1 ? " on " + job.size() + " MPI ranks" : "",
                    step > 0 ? ", resuming at step " + step : "");
        }

        @Override
        public void onStep(Trainer.StepMetrics m) {
            if (json) {
                try {
                    System.out.println(om.writeValueAsString(m).replace("NaN", "null"));
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
                return;
            }
            boolean val = !Double.isNaN(m.valLoss());
            String line = String.format(Locale.ROOT, "step %d/%d  loss %.4f  lm %.4f%s  lr %.2e  |g| %.2f  %.0f tok/s  ETA %s",
                    m.step(), m.totalSteps(), m.loss(), m.lmLoss(),
                    val ? String.format(Locale.ROOT, "  val %.4f", m.valLoss()) : "",
                    m.lr(), m.gradNorm(), m.tokensPerSecond(),
                    Terminal.duration(Terminal.remaining(m.elapsedSeconds(), (double) m.step() / m.totalSteps())));
            if (Terminal.isInteractive()) {
                Terminal.status(Terminal.bar(m.step(), m.totalSteps()) + " " + line);
                if (val) {
                    Terminal.clearStatus();
                    System.err.println(line);
                }
            } else if (log.due(m.step(), m.totalSteps(), val || m.step() == m.totalSteps())) {
                log.show(line);
            }
        }

        void finish(Trainer t, Path out) {
            Terminal.clearStatus();
            if (!json) {
                System.err.printf(Locale.ROOT, "dsmoe train: done at step %d; checkpoint in %s%n", t.step(), out);
            }
        }
    }
}
