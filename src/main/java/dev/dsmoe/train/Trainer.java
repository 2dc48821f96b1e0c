package dev.dsmoe.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.io.CheckpointFiles;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.Init;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.Transformer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The training loop: gradient accumulation over micro-batches, global-norm clipping, AdamW with
 * warm-up + cosine, periodic validation and checkpoints, and bit-identical resume.
 *
 * <p>Everything that decides a step's numbers is in the checkpoint: weights, moments, the step,
 * the data position, the schedule. With the same thread count and kernels, N steps then a resume
 * for M steps equals N+M steps in one run, bit for bit.
 */
public final class Trainer {

    /**
     * Settings of a run. {@code totalSteps} 0 means "decide from the time budget" (or, when
     * resuming, "the checkpoint's budget");
     * {@code stopAfter} &gt; 0 ends this invocation after that many steps (checkpointed), keeping
     * the schedule of the whole budget, so a later resume continues the same run.
     */
    public record Options(int batch, int seqLen, int gradAccum, double lr, double minLr, long warmupSteps,
                          double weightDecay, double clip, long seed, long totalSteps, double minutes,
                          long saveEvery, long evalEvery, int evalBatches, long stopAfter) {
        public Options {
            if (batch < 1 || seqLen < 1 || gradAccum < 1) throw new IllegalArgumentException("--batch, --seq and --grad-accum must be >= 1");
            if (totalSteps < 0 || minutes < 0) throw new IllegalArgumentException("the budget must not be negative");
            if (weightDecay < 0 || clip < 0) throw new IllegalArgumentException("--weight-decay and --clip must be >= 0");
        }

        public long tokensPerStep() {
            return (long) batch * seqLen * gradAccum;
        }
    }

    /** One step's metrics (also a line of metrics.jsonl). valLoss is NaN when not evaluated. */
    public record StepMetrics(long step, long totalSteps, long tokens, double loss, double lmLoss,
                              double auxAttention, double auxMlp, double attnMarginalEntropy,
                              double attnConditionalEntropy, double mlpMarginalEntropy,
                              double mlpConditionalEntropy, double lr, double gradNorm,
                              double tokensPerSecond, double elapsedSeconds, double valLoss) {}

    /** Progress callbacks for the CLI. */
    public interface Listener {
        default void onStart(long step, long totalSteps, Options o) {}

        default void onStep(StepMetrics m) {}

        default void onSave(long step, Path dir) {}
    }

    public static final String METRICS = "metrics.jsonl";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final ModelConfig config;
    private final ParamLayout layout;
    private final float[] params, grads;
    private final Transformer model;
    private final AdamWOptimizer opt;
    private final Options o;
    private final BatchSource train;
    private final BatchSource val;
    private final Path out;
    private final Path tokenizer;
    private final String dataDescription;
    private long step, totalSteps, tokensSeen;
    private double elapsedBefore;
    private double lastVal = Double.NaN;

    private Trainer(ModelConfig config, float[] params, Options o, BatchSource train, BatchSource val,
                    Path out, Path tokenizer, String dataDescription) {
        this.config = config;
        this.layout = ParamLayout.of(config);
        this.params = params;
        this.grads = layout.newBuffer();
        this.model = new Transformer(layout, params, grads);
        this.opt = new AdamWOptimizer(layout, 0.9f, 0.95f, 1e-8f, (float) o.weightDecay());
        this.o = o;
        this.train = train;
        this.val = val;
        this.out = out;
        this.tokenizer = tokenizer;
        this.dataDescription = dataDescription;
        this.totalSteps = o.totalSteps();
    }

    /**
     * What a run of {@code c} at (batch, seqLen) holds on the heap: parameters, gradients and
     * the AdamW moments (a resume first reads the moments into two more buffers of that size),
     * the model's activations and tables, and the token ids of a step and of a validation pass.
     */
    public static Footprint footprint(ModelConfig c, int batch, int seqLen, boolean resume) {
        long params = ParamLayout.of(c).totalSize();
        long tokens = (long) batch * seqLen;
        return Footprint.heap("parameters, gradients and AdamW moments",
                        Math.multiplyExact(params, Float.BYTES * (resume ? 6L : 4L)), params)
                .plus(Transformer.footprint(c, batch, seqLen))
                .plus(Footprint.heap("activations", Integer.BYTES * 4 * tokens, tokens));
    }

    /** A fresh run: weights initialised from the seed. */
    public static Trainer fresh(ModelConfig config, Options o, BatchSource train, BatchSource val, Path out,
                                Path tokenizer, String dataDescription) {
        if (o.totalSteps() == 0 && !(o.minutes() > 0)) {
            throw new IllegalArgumentException("give a budget: --steps, --tokens or --minutes");
        }
        ParamLayout layout = ParamLayout.of(config);
        float[] p = layout.newBuffer();
        Init.initialize(layout, p, o.seed());
        return new Trainer(config, p, o, train, val, out, tokenizer, dataDescription);
    }

    /**
     * Continues the run checkpointed in {@code dir}. The options must agree with the saved ones
     * on everything that shapes the numbers (batch, sequence, accumulation, seed); the budget
     * may be extended.
     */
    public static Trainer resume(Path dir, Options o, BatchSource train, BatchSource val, Path out, Path tokenizer,
                                 String dataDescription) throws IOException {
        CheckpointFiles.recover(dir);
        ModelConfig config = ModelFiles.readConfig(dir);
        Path stateFile = dir.resolve(TrainerState.FILE);
        if (!Files.isRegularFile(stateFile)) {
            throw new IOException(stateFile + ": missing; " + dir + " holds no training checkpoint to resume");
        }
        TrainerState s;
        try {
            s = TrainerState.fromJson(Files.readString(stateFile));
        } catch (IOException e) {
            throw new IOException(stateFile + ": unreadable (" + e.getMessage().lines().findFirst().orElse("") + ")", e);
        }
        if (s.batch() != o.batch() || s.seqLen() != o.seqLen() || s.gradAccum() != o.gradAccum()) {
            throw new IllegalArgumentException("resume: " + dir + " was trained with --batch " + s.batch() + " --seq "
                    + s.seqLen() + " --grad-accum " + s.gradAccum() + "; use the same values to continue it");
        }
        ParamLayout layout = ParamLayout.of(config);
        float[] p = ModelFiles.readParams(dir, layout);
        Options merged = new Options(s.batch(), s.seqLen(), s.gradAccum(), s.lr(), s.minLr(), s.warmupSteps(),
                s.weightDecay(), s.clip(), s.seed(), Math.max(s.totalSteps(), o.totalSteps()), 0,
                o.saveEvery(), o.evalEvery(), o.evalBatches(), o.stopAfter());
        Trainer t = new Trainer(config, p, merged, train, val, out, tokenizer, dataDescription);
        float[] m = layout.newBuffer(), v = layout.newBuffer();
        long optSteps = ModelFiles.readOptimizer(dir, layout, m, v);
        t.opt.restore(m, v, optSteps);
        t.step = s.step();
        t.totalSteps = merged.totalSteps();
        t.tokensSeen = s.tokensSeen();
        t.elapsedBefore = s.elapsedSeconds();
        train.seek(s.dataPosition());
        t.truncateMetrics();
        return t;
    }

    public ModelConfig config() { return config; }

    public long step() { return step; }

    public long totalSteps() { return totalSteps; }

    public float[] params() { return params; }

    /** Runs until the budget is spent; saves every {@code saveEvery} steps and at the end. */
    public void run(Listener listener) throws IOException {
        Files.createDirectories(out);
        if (totalSteps == 0) calibrate();
        LrSchedule schedule = new LrSchedule(o.lr(), o.minLr(), warmup(), totalSteps);
        listener.onStart(step, totalSteps, o);
        int n = o.batch() * o.seqLen();
        int[] in = new int[n], tgt = new int[n];
        long start = System.nanoTime();
        long lastSave = step;
        long endStep = o.stopAfter() > 0 ? Math.min(totalSteps, step + o.stopAfter()) : totalSteps;
        while (step < endStep) {
            long t0 = System.nanoTime();
            Arrays.fill(grads, 0f);
            double loss = 0, lm = 0, auxA = 0, auxM = 0, hA = 0, hxA = 0, hM = 0, hxM = 0;
            for (int micro = 0; micro < o.gradAccum(); micro++) {
                train.next(in, tgt, o.batch(), o.seqLen());
                Transformer.Loss l = model.forwardBackward(in, tgt, o.batch(), o.seqLen(), 1f / o.gradAccum());
                loss += l.total() / o.gradAccum();
                lm += l.lm() / o.gradAccum();
                auxA += l.auxAttention() / o.gradAccum();
                auxM += l.auxMlp() / o.gradAccum();
                hA += l.attnMarginalEntropy() / o.gradAccum();
                hxA += l.attnConditionalEntropy() / o.gradAccum();
                hM += l.mlpMarginalEntropy() / o.gradAccum();
                hxM += l.mlpConditionalEntropy() / o.gradAccum();
            }
            double lr = schedule.lr(step + 1);
            double norm = opt.step(params, grads, (float) lr, o.clip());
            step++;
            tokensSeen += o.tokensPerStep();
            double sec = (System.nanoTime() - t0) / 1e9;
            double elapsed = elapsedBefore + (System.nanoTime() - start) / 1e9;
            double valLoss = Double.NaN;
            if (val != null && o.evalEvery() > 0 && (step % o.evalEvery() == 0 || step == totalSteps)) {
                valLoss = evaluate(o.evalBatches());
                lastVal = valLoss;
            }
            StepMetrics m = new StepMetrics(step, totalSteps, tokensSeen, loss, lm, auxA, auxM, hA, hxA, hM, hxM,
                    lr, norm, o.tokensPerStep() / sec, elapsed, valLoss);
            appendMetrics(m);
            listener.onStep(m);
            if (!Double.isFinite(loss)) {
                save(elapsed);
                // The settings' doing, not a bug: reported as bad input (exit 2) by the command line.
                throw new IllegalArgumentException("loss became " + loss + " at step " + step
                        + "; lower --lr (now " + o.lr() + ") or check the data");
            }
            if ((o.saveEvery() > 0 && step - lastSave >= o.saveEvery()) || step == endStep) {
                save(elapsed);
                lastSave = step;
                listener.onSave(step, out);
            }
        }
    }

    private long warmup() {
        return o.warmupSteps() >= 0 ? Math.min(o.warmupSteps(), totalSteps) : Math.max(1, Math.min(200, totalSteps / 20));
    }

    /** For a time budget: times two forward+backward passes (no update) and fixes the step count. */
    private void calibrate() {
        int n = o.batch() * o.seqLen();
        int[] in = new int[n], tgt = new int[n];
        long pos = train.position();
        train.next(in, tgt, o.batch(), o.seqLen());
        model.forwardBackward(in, tgt, o.batch(), o.seqLen(), 1f); // JIT warm-up
        long t0 = System.nanoTime();
        model.forwardBackward(in, tgt, o.batch(), o.seqLen(), 1f);
        double perMicro = (System.nanoTime() - t0) / 1e9;
        Arrays.fill(grads, 0f);
        train.seek(pos);
        double perStep = perMicro * o.gradAccum() * 1.03; // the optimizer and bookkeeping
        totalSteps = Math.max(1, (long) (o.minutes() * 60 / perStep));
    }

    /** Mean LM loss over {@code batches} sequential validation batches. */
    public double evaluate(int batches) {
        int n = o.batch() * o.seqLen();
        int[] in = new int[n], tgt = new int[n];
        long pos = val.position();
        val.seek(0);
        double sum = 0;
        for (int b = 0; b < batches; b++) {
            val.next(in, tgt, o.batch(), o.seqLen());
            sum += model.forward(in, tgt, o.batch(), o.seqLen()).lm();
        }
        val.seek(pos);
        return sum / batches;
    }

    /** Writes the checkpoint (weights, moments, state, config, tokenizer) as one atomic change. */
    public void save(double elapsedSeconds) throws IOException {
        TrainerState s = new TrainerState(TrainerState.FORMAT, step, totalSteps, tokensSeen, train.position(), o.seed(),
                o.batch(), o.seqLen(), o.gradAccum(), o.lr(), o.minLr(), warmup(), o.weightDecay(), o.clip(),
                elapsedSeconds, dataDescription);
        CheckpointFiles cf = new CheckpointFiles(out)
                .text(ModelFiles.CONFIG, config.toJson() + "\n")
                .safetensors(ModelFiles.MODEL, ModelFiles.modelTensors(layout, params, SafeTensors.DType.F32)
                        .metadata("step", Long.toString(step)))
                .safetensors(ModelFiles.OPTIMIZER, ModelFiles.optimizerTensors(layout, opt.m(), opt.v(), opt.steps()))
                .text(TrainerState.FILE, s.toJson());
        if (tokenizer != null && Files.isRegularFile(tokenizer)
                && !tokenizer.toAbsolutePath().normalize().equals(out.resolve(ModelFiles.TOKENIZER).toAbsolutePath().normalize())) {
            byte[] tok = Files.readAllBytes(tokenizer);
            cf.file(ModelFiles.TOKENIZER, ch -> ch.write(java.nio.ByteBuffer.wrap(tok)));
        }
        cf.commit();
    }

    private void appendMetrics(StepMetrics m) throws IOException {
        ObjectNode j = JSON.valueToTree(m);
        if (Double.isNaN(m.valLoss())) j.remove("valLoss");
        for (String k : List.of("attnMarginalEntropy", "attnConditionalEntropy", "mlpMarginalEntropy", "mlpConditionalEntropy")) {
            if (j.get(k).isNull() || Double.isNaN(j.get(k).asDouble())) j.remove(k);
        }
        Files.writeString(out.resolve(METRICS), JSON.writeValueAsString(j) + "\n", StandardCharsets.UTF_8,
                StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /** Drops metrics lines written after the checkpoint being resumed (a killed run's tail). */
    private void truncateMetrics() throws IOException {
        Path f = out.resolve(METRICS);
        if (!Files.isRegularFile(f)) return;
        List<String> keep = new ArrayList<>();
        for (String line : Files.readAllLines(f, StandardCharsets.UTF_8)) {
            if (line.isBlank()) continue;
            try {
                if (JSON.readTree(line).path("step").asLong(Long.MAX_VALUE) <= step) keep.add(line);
            } catch (IOException e) {
                break; // a half-written last line
            }
        }
        dev.dsmoe.io.AtomicFiles.writeString(f, keep.isEmpty() ? "" : String.join("\n", keep) + "\n");
    }

    /** Last validation loss, NaN if none yet. */
    public double lastValidationLoss() {
        return lastVal;
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "Trainer[step %d/%d]", step, totalSteps);
    }
}
