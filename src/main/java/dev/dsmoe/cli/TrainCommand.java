package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.train.BatchSource;
import dev.dsmoe.train.TrainData;
import dev.dsmoe.train.Trainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
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
                "--resume DIR continues a run bit-identically."})
final class TrainCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--data", paramLabel = "DIR", description = "Token shards and tokenizer from 'dsmoe prepare' (train.bin, val.bin, meta.json, tokenizer.json).")
    Path data;

    @Option(names = "--out", paramLabel = "DIR", description = "Where checkpoints and metrics.jsonl go (default: the --resume directory).")
    Path out;

    @Option(names = "--resume", paramLabel = "DIR", description = "Continue the run checkpointed in DIR.")
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
    @Option(names = "--warmup", defaultValue = "-1", description = "Warm-up steps (default: 5% of the steps, at most 200).") long warmup;
    @Option(names = "--weight-decay", defaultValue = "0.01", description = "AdamW weight decay on weight matrices (the tied embedding included; not on norm gains). Default: ${DEFAULT-VALUE}.") double weightDecay;
    @Option(names = "--clip", defaultValue = "1.0", description = "Global gradient-norm clip (0: off). Default: ${DEFAULT-VALUE}.") double clip;
    @Option(names = "--seed", defaultValue = "1234", description = "Seed for initialisation and data order. Default: ${DEFAULT-VALUE}.") long seed;
    @Option(names = "--save-every", defaultValue = "200", description = "Checkpoint every N steps (and at the end). Default: ${DEFAULT-VALUE}.") long saveEvery;
    @Option(names = "--eval-every", defaultValue = "100", description = "Validation loss every N steps (0: only at the end). Default: ${DEFAULT-VALUE}.") long evalEvery;
    @Option(names = "--eval-batches", defaultValue = "8", description = "Validation batches per evaluation. Default: ${DEFAULT-VALUE}.") int evalBatches;
    @Option(names = "--stop-after", defaultValue = "0", description = "End this invocation after N steps, checkpointed, keeping the whole budget's schedule (resume later).") long stopAfter;
    @Option(names = "--json", description = "One JSON object per step on stdout instead of the progress display.") boolean json;

    /** Adds one option per config.json key ("--hidden-size" for hidden_size), so every key can be set. */
    static void addConfigOptions(CommandLine.Model.CommandSpec spec) {
        for (String key : ModelConfig.jsonKeys()) {
            if (key.equals("model_type")) continue;
            spec.addOption(CommandLine.Model.OptionSpec.builder("--" + key.replace('_', '-'))
                    .paramLabel("VALUE").type(String.class)
                    .description("config.json " + key + " (overrides the preset)").build());
        }
    }

    static final class Presets implements Iterable<String> {
        @Override
        public java.util.Iterator<String> iterator() {
            return ModelConfig.presetNames().iterator();
        }
    }

    private ModelConfig resolveConfig(int tokenizerVocab) {
        ModelConfig c = ModelConfig.preset(preset);
        if (family != null) {
            ModelConfig.Family f = ModelConfig.Family.parse(family);
            int att = experts != null ? experts[0] : (f == ModelConfig.Family.DSMOE ? 4 : 1);
            int mlp = experts != null && experts.length > 1 ? experts[1]
                    : switch (f) { case DSMOE -> 16; case SMOE -> 8; case DENSE -> 1; };
            c = ModelConfig.sizeMatched(c, f, att, mlp);
        }
        boolean vocabGiven = false;
        for (String key : ModelConfig.jsonKeys()) {
            if (key.equals("model_type")) continue;
            CommandLine.Model.OptionSpec opt = spec.findOption("--" + key.replace('_', '-'));
            String v = opt == null ? null : opt.getValue();
            if (v != null) {
                c = c.with(key, v);
                vocabGiven |= key.equals("vocab_size");
            }
        }
        if (!vocabGiven) c = c.withVocabSize(tokenizerVocab);
        if (c.vocabSize() < tokenizerVocab) {
            throw new IllegalArgumentException("vocab_size " + c.vocabSize() + " is smaller than the tokenizer's "
                    + tokenizerVocab + " tokens in " + data + "; drop --vocab-size or raise it");
        }
        return c.validate();
    }

    @Override
    public Integer call() throws Exception {
        if (resume == null && out == null) throw new IllegalArgumentException("--out DIR is required (or --resume DIR)");
        if (out == null) out = resume;
        Path dataDir = data;
        if (dataDir == null && resume != null) dataDir = TrainData.dataDirOf(resume);
        if (dataDir == null) throw new IllegalArgumentException("--data DIR is required: the output of 'dsmoe prepare'");
        try (TrainData td = TrainData.open(dataDir)) {
            return train(td);
        }
    }

    private int train(TrainData td) throws Exception {
        ModelConfig config = resolveConfig(td.vocabSize());
        int seqLen = seq != null ? seq : Math.min(256, config.maxPositions());
        if (seqLen > config.maxPositions()) {
            throw new IllegalArgumentException("--seq " + seqLen + " exceeds max_position_embeddings " + config.maxPositions());
        }
        long steps = budget == null ? 0 : budget.steps;
        if (budget != null && budget.tokens > 0) steps = Math.ceilDiv(budget.tokens, (long) batch * seqLen * gradAccum);
        double minutes = budget == null ? 0 : budget.minutes;
        if (resume == null && steps == 0 && !(minutes > 0)) {
            throw new IllegalArgumentException("give a budget: --steps N, --tokens N or --minutes M");
        }
        BatchSource trainSource = td.train(batch, seqLen, seed);
        BatchSource val = td.validation(batch, seqLen);
        int evalN = (int) Math.min(evalBatches, td.validationBatches(batch, seqLen));
        if (val == null) System.err.println("dsmoe train: note: the validation shard is shorter than one window; no validation loss");
        Trainer.Options o = new Trainer.Options(batch, seqLen, gradAccum, lr, minLr != null ? minLr : lr / 10, warmup,
                weightDecay, clip, seed, steps, minutes, saveEvery, val == null ? 0 : evalEvery, Math.max(1, evalN), stopAfter);
        MemoryCheck.training(config, resume, batch, seqLen);
        Trainer trainer;
        if (resume != null) {
            if (!Files.isDirectory(resume)) throw new IllegalArgumentException("--resume " + resume + ": no such directory");
            trainer = Trainer.resume(resume, o, trainSource, val, out, td.tokenizer(), td.description());
            if (!trainer.config().equals(configForResume(trainer.config(), td.vocabSize()))) {
                throw new IllegalArgumentException("--resume " + resume + ": its config.json differs from the options given; "
                        + "drop the model options to continue it as it was");
            }
        } else {
            if (Files.exists(out.resolve(dev.dsmoe.train.TrainerState.FILE))) {
                throw new IllegalArgumentException("--out " + out + " already holds a training run; use --resume " + out
                        + " to continue it, or another --out");
            }
            trainer = Trainer.fresh(config, o, trainSource, val, out, td.tokenizer(), td.description());
        }
        ProgressListener listener = new ProgressListener(json, trainer.config());
        trainer.run(listener);
        listener.finish(trainer, out);
        return 0;
    }

    /** With --resume, model options are only accepted when they agree with the checkpoint. */
    private ModelConfig configForResume(ModelConfig saved, int tokenizerVocab) {
        boolean anyGiven = family != null || spec.commandLine().getParseResult().hasMatchedOption("--preset");
        for (String key : ModelConfig.jsonKeys()) {
            CommandLine.Model.OptionSpec opt = spec.findOption("--" + key.replace('_', '-'));
            anyGiven |= opt != null && opt.getValue() != null;
        }
        return anyGiven ? resolveConfig(tokenizerVocab) : saved;
    }

    /** Progress bar (interactive), periodic lines (logs) or JSON lines (--json). */
    static final class ProgressListener implements Trainer.Listener {
        private final boolean json;
        private final ModelConfig config;
        private final ObjectMapper om = new ObjectMapper();
        private long lastLine;

        ProgressListener(boolean json, ModelConfig config) {
            this.json = json;
            this.config = config;
        }

        @Override
        public void onStart(long step, long totalSteps, Trainer.Options o) {
            if (json) return;
            System.err.printf(Locale.ROOT, "dsmoe train: %s, %.2fM parameters (%.2fM non-embedding), %d steps of %d tokens%s%n",
                    describe(config), config.totalParams() / 1e6, config.nonEmbeddingParams() / 1e6, totalSteps,
                    o.tokensPerStep(), step > 0 ? ", resuming at step " + step : "");
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
            double eta = (m.totalSteps() - m.step()) * (m.elapsedSeconds() / Math.max(1, m.step()));
            String line = String.format(Locale.ROOT, "step %d/%d  loss %.4f  lm %.4f%s  lr %.2e  |g| %.2f  %.0f tok/s  ETA %s",
                    m.step(), m.totalSteps(), m.loss(), m.lmLoss(),
                    Double.isNaN(m.valLoss()) ? "" : String.format(Locale.ROOT, "  val %.4f", m.valLoss()),
                    m.lr(), m.gradNorm(), m.tokensPerSecond(), duration(eta));
            if (Terminal.isInteractive()) {
                Terminal.status(bar(m.step(), m.totalSteps()) + " " + line);
                if (!Double.isNaN(m.valLoss())) {
                    Terminal.clearStatus();
                    System.err.println(line);
                }
            } else if (m.step() == m.totalSteps() || !Double.isNaN(m.valLoss()) || System.nanoTime() - lastLine > 10e9) {
                System.err.println(line);
                lastLine = System.nanoTime();
            }
        }

        void finish(Trainer t, Path out) {
            Terminal.clearStatus();
            if (!json) {
                System.err.printf(Locale.ROOT, "dsmoe train: done at step %d; checkpoint in %s%n", t.step(), out);
            }
        }

        static String describe(ModelConfig c) {
            String fam = c.nAtt() == 1 && c.nFfd() == 1 ? "dense"
                    : c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K ? "smoe (top-" + c.trainingTopK() + ")" : "ds-moe";
            return fam + " d=" + c.dEmb() + " layers=" + c.numLayers() + " N_att=" + c.nAtt() + " N_ffd=" + c.nFfd();
        }

        static String bar(long done, long total) {
            int w = 20, filled = (int) (w * done / Math.max(1, total));
            return "[" + "#".repeat(filled) + "-".repeat(w - filled) + "]";
        }

        static String duration(double s) {
            long t = (long) s;
            return t >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", t / 3600, t / 60 % 60)
                    : String.format(Locale.ROOT, "%dm%02ds", t / 60, t % 60);
        }
    }
}
