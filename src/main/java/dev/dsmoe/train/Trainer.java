package dev.dsmoe.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.dist.CollectiveFailure;
import dev.dsmoe.dist.Dist;
import dev.dsmoe.io.CheckpointFiles;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.Kernels;
import dev.dsmoe.kernels.Parallel;
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
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The training loop: gradient accumulation over micro-batches, global-norm clipping, AdamW with
 * warm-up + cosine, periodic validation and checkpoints, and bit-identical resume.
 *
 * <p>Everything that decides a step's numbers is in the checkpoint: weights, moments, the step,
 * the data position and fingerprint, the schedule, the GEMM backend and thread count (both change
 * the rounding: OpenBLAS picks its kernels by each per-thread block's size, and the Java kernels
 * too split some sums by thread). N steps then a resume for M steps equals N+M steps in one run,
 * bit for bit; {@link #resume} refuses settings that would break that.
 *
 * <p>Data-parallel ({@link Dist} of K ranks): rank 0 initialises or loads the weights (and the
 * moments) and broadcasts them. A step's K·A micro-batches are numbered j = 0 .. K·A-1 in the
 * order one process with {@code --grad-accum K·A} draws them, and rank r trains j = a·K + r for
 * a = 0 .. A-1, each scaled by 1/(K·A); the gradient buffer is summed across ranks (bucketed
 * allreduce), the loss and router statistics too, and every rank then clips and steps AdamW
 * alike, so all ranks hold the same weights and the run equals the one-process run with K·A
 * accumulation up to the order of the float sums. Only rank 0 evaluates, writes metrics and
 * checkpoints (which record K). Before the first step the ranks compare hashes of the model,
 * data, options and compute settings, and stop together, in one line, on a mismatch.
 */
public final class Trainer {

    /**
     * Settings of a run. {@code totalSteps} 0 means "decide from the time budget" (or, when
     * resuming, "the checkpoint's budget"); when resuming, a larger {@code totalSteps} or a
     * {@code minutes} budget (the run's total wall-clock time) extends the run (see
     * {@link LrSchedule#extendedTo}).
     * {@code stopAfter} &gt; 0 ends this invocation after that many steps (checkpointed), keeping
     * the schedule of the whole budget, so a later resume continues the same run.
     * {@code budget} is the budget as given (e.g. "--tokens 65536", kept in the state's budget
     * history; null: described from the steps or minutes); {@code json} is the command line's
     * output choice, which the trainer only saves so that a resume keeps it.
     */
    public record Options(int batch, int seqLen, int gradAccum, double lr, double minLr, long warmupSteps,
                          double weightDecay, double clip, long seed, long totalSteps, double minutes,
                          long saveEvery, long evalEvery, int evalBatches, long stopAfter, String budget, boolean json) {
        public Options {
            if (batch < 1 || seqLen < 1 || gradAccum < 1) throw new IllegalArgumentException("--batch, --seq and --grad-accum must be >= 1");
            if (totalSteps < 0 || minutes < 0) throw new IllegalArgumentException("the budget must not be negative");
            if (weightDecay < 0 || clip < 0) throw new IllegalArgumentException("--weight-decay and --clip must be >= 0");
        }

        public Options(int batch, int seqLen, int gradAccum, double lr, double minLr, long warmupSteps,
                       double weightDecay, double clip, long seed, long totalSteps, double minutes,
                       long saveEvery, long evalEvery, int evalBatches, long stopAfter) {
            this(batch, seqLen, gradAccum, lr, minLr, warmupSteps, weightDecay, clip, seed, totalSteps, minutes,
                    saveEvery, evalEvery, evalBatches, stopAfter, null, false);
        }

        String describeBudget() {
            if (budget != null) return budget;
            return totalSteps > 0 ? "--steps " + totalSteps : "--minutes " + minutes;
        }

        /** Tokens one rank trains on per step (the job's step: times the ranks). */
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
    /** The ranks of a data-parallel job (one process: {@link Dist#single()}). */
    private final Dist dist;
    private final BatchSource train;
    private final BatchSource val;
    private final Path out;
    private final Path tokenizer;
    private final String dataDescription;
    private final String dataFingerprint;
    /** The GEMM backend and thread count this run computes with (recorded: they change the bits). */
    private final String kernels;
    private final int threads;
    private final List<TrainerState.Budget> budgets = new ArrayList<>();
    /** Null until the step count is fixed (a time budget fixes it in {@link #run}). */
    private LrSchedule schedule;
    /** A resumed run given a time budget: extended in {@link #run}, once a step is timed. */
    private boolean extendByMinutes;
    private long step, totalSteps, tokensSeen;
    private double elapsedBefore;
    private double lastVal = Double.NaN;

    private Trainer(ModelConfig config, float[] params, Options o, Dist dist, BatchSource train, BatchSource val,
                    Path out, Path tokenizer, String dataDescription, String dataFingerprint) {
        this.config = config;
        this.layout = ParamLayout.of(config);
        this.params = params;
        this.grads = layout.newBuffer();
        this.model = new Transformer(layout, params, grads);
        this.opt = new AdamWOptimizer(layout, 0.9f, 0.95f, 1e-8f, (float) o.weightDecay());
        this.o = o;
        this.dist = dist;
        this.train = train;
        this.val = val;
        this.out = out;
        this.tokenizer = tokenizer;
        this.dataDescription = dataDescription;
        this.dataFingerprint = dataFingerprint;
        this.kernels = Kernels.gemm().name();
        this.threads = Parallel.threads();
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

    /**
     * A fresh run: weights initialised from the seed. {@code dataFingerprint} identifies the
     * training data (see {@link TrainData#fingerprint()}; null: not recorded).
     */
    public static Trainer fresh(ModelConfig config, Options o, BatchSource train, BatchSource val, Path out,
                                Path tokenizer, String dataDescription, String dataFingerprint) {
        return fresh(config, o, Dist.single(), train, val, out, tokenizer, dataDescription, dataFingerprint);
    }

    /** A fresh run of the job {@code dist}: rank 0 initialises the weights and broadcasts them. */
    public static Trainer fresh(ModelConfig config, Options o, Dist dist, BatchSource train, BatchSource val, Path out,
                                Path tokenizer, String dataDescription, String dataFingerprint) {
        if (o.totalSteps() == 0 && !(o.minutes() > 0)) {
            throw new IllegalArgumentException("give a budget: --steps, --tokens or --minutes");
        }
        ParamLayout layout = ParamLayout.of(config);
        float[] p = layout.newBuffer();
        if (dist.isRoot()) Init.initialize(layout, p, o.seed());
        dist.broadcast(p);
        return new Trainer(config, p, o, dist, train, val, out, tokenizer, dataDescription, dataFingerprint);
    }

    /** Finishes or discards an interrupted checkpoint change in {@code dir}, then reads its trainer_state.json. */
    public static TrainerState readState(Path dir) throws IOException {
        return readState(dir, true);
    }

    /**
     * {@link #readState(Path)}, finishing an interrupted change only when {@code recover} (in a
     * data-parallel job rank 0 recovers, the others read after it).
     */
    public static TrainerState readState(Path dir, boolean recover) throws IOException {
        if (recover) CheckpointFiles.recover(dir);
        Path stateFile = dir.resolve(TrainerState.FILE);
        if (!Files.isRegularFile(stateFile)) {
            throw new IOException(stateFile + ": missing; " + dir + " holds no training checkpoint to resume");
        }
        try {
            return TrainerState.fromJson(Files.readString(stateFile));
        } catch (IOException e) {
            throw new IOException(stateFile + ": unreadable (" + e.getMessage().lines().findFirst().orElse("") + ")", e);
        }
    }

    /**
     * Continues the run checkpointed in {@code dir}. The options, the data (by fingerprint), the
     * GEMM backend and the thread count must agree with the saved ones on everything that
     * shapes the numbers; the budget may be extended (a larger {@code totalSteps}, or
     * {@code minutes} as the run's new total time), never shortened. The operational options
     * ({@code saveEvery}, {@code evalEvery}, {@code evalBatches}, {@code stopAfter}) are this
     * invocation's. A format-1 state recorded no backend, threads or fingerprint: the current
     * ones are taken and recorded at the next checkpoint.
     */
    public static Trainer resume(Path dir, Options o, BatchSource train, BatchSource val, Path out, Path tokenizer,
                                 String dataDescription, String dataFingerprint) throws IOException {
        TrainerState s = readState(dir);
        return resume(dir, s, ModelFiles.readConfig(dir), o, train, val, out, tokenizer, dataDescription, dataFingerprint);
    }

    /**
     * {@link #resume(Path, Options, BatchSource, BatchSource, Path, Path, String, String)} with the
     * checkpoint's state and config already read ({@link #readState} first, then
     * {@link ModelFiles#readConfig}), for a caller that has looked at them before.
     */
    public static Trainer resume(Path dir, TrainerState s, ModelConfig config, Options o, BatchSource train, BatchSource val,
                                 Path out, Path tokenizer, String dataDescription, String dataFingerprint) throws IOException {
        return resume(dir, s, config, o, Dist.single(), train, val, out, tokenizer, dataDescription, dataFingerprint);
    }

    /**
     * The resume of a job: every rank checks the state alike; rank 0 reads the weights and moments
     * and broadcasts them. The number of ranks must be the saved one (it decides each rank's
     * micro-batches and thread count): another is refused, by every rank together.
     */
    public static Trainer resume(Path dir, TrainerState s, ModelConfig config, Options o, Dist dist, BatchSource train,
                                 BatchSource val, Path out, Path tokenizer, String dataDescription, String dataFingerprint)
            throws IOException {
        boolean otherRanks = s.rankCount() != dist.size();
        if (dist.size() > 1 ? dist.anyOf(otherRanks) : otherRanks) {
            String msg = "resume: " + dir + " was trained on " + s.rankCount() + (s.rankCount() == 1 ? " process" : " ranks (mpirun -np "
                    + s.rankCount() + ")") + ", this job has " + dist.size() + "; the ranks share out each step's micro-batches"
                    + " and threads, so continue it with " + (s.rankCount() == 1 ? "one process (no mpirun)" : "mpirun -np " + s.rankCount());
            throw dist.size() > 1 ? new CollectiveFailure(otherRanks ? msg : "resume: the ranks read different checkpoints in " + dir)
                    : new IllegalArgumentException(msg);
        }
        if (s.batch() != o.batch() || s.seqLen() != o.seqLen() || s.gradAccum() != o.gradAccum() || s.seed() != o.seed()
                || s.lr() != o.lr() || s.minLr() != o.minLr() || s.warmupSteps() != o.warmupSteps()
                || s.weightDecay() != o.weightDecay() || s.clip() != o.clip()) {
            throw new IllegalArgumentException("resume: " + dir + " was trained with --batch " + s.batch() + " --seq "
                    + s.seqLen() + " --grad-accum " + s.gradAccum() + " --seed " + s.seed() + " --lr " + s.lr()
                    + " --min-lr " + s.minLr() + " --warmup " + s.warmupSteps() + " --weight-decay " + s.weightDecay()
                    + " --clip " + s.clip() + "; use the same values to continue it");
        }
        if (!s.legacy() && (!s.kernels().equals(Kernels.gemm().name()) || s.threads() != Parallel.threads())) {
            throw new IllegalArgumentException("resume: " + dir + " was trained with the " + s.kernels() + " kernels on "
                    + s.threads() + " threads, this process has " + Kernels.gemm().name() + " on " + Parallel.threads()
                    + "; both change the rounding, so use the saved ones to continue it");
        }
        if (s.dataFingerprint() != null && dataFingerprint != null && !s.dataFingerprint().equals(dataFingerprint)) {
            throw new IllegalArgumentException("resume: " + dir + " was trained on other data (" + s.data()
                    + ", fingerprint " + s.dataFingerprint() + "); give it that data to continue it");
        }
        if (o.totalSteps() > 0 && o.totalSteps() < s.totalSteps()) {
            throw new IllegalArgumentException("resume: " + o.describeBudget() + " would shorten the run's " + s.totalSteps()
                    + " steps; a budget can only be extended (--stop-after N ends this invocation early)");
        }
        ParamLayout layout = ParamLayout.of(config);
        float[] p = dist.isRoot() ? ModelFiles.readParams(dir, layout) : layout.newBuffer();
        dist.broadcast(p);
        Trainer t = new Trainer(config, p, o, dist, train, val, out, tokenizer, dataDescription, dataFingerprint);
        if (dist.isRoot()) {
            float[] m = layout.newBuffer(), v = layout.newBuffer();
            long optSteps = ModelFiles.readOptimizer(dir, layout, m, v);
            t.opt.restore(m, v, optSteps);
        }
        dist.broadcast(t.opt.m());
        dist.broadcast(t.opt.v());
        t.opt.restore(t.opt.m(), t.opt.v(), dist.broadcast(t.opt.steps()));
        t.step = s.step();
        t.totalSteps = s.totalSteps();
        t.tokensSeen = s.tokensSeen();
        t.elapsedBefore = s.elapsedSeconds();
        t.budgets.addAll(s.legacy() ? List.of(s.lastBudget()) : s.budgets());
        t.schedule = s.legacy() ? new LrSchedule(s.lr(), s.minLr(), s.warmupSteps(), s.totalSteps())
                : new LrSchedule(s.lr(), s.minLr(), s.warmupSteps(), s.totalSteps(), s.cosineFromStep(), s.cosineFromProgress());
        if (o.totalSteps() > s.totalSteps()) {
            t.extendTo(o.totalSteps());
        } else if (o.totalSteps() == 0 && o.minutes() > 0) {
            t.extendByMinutes = true;
        }
        train.seek(s.dataPosition());
        return t;
    }

    /** Grows the budget to {@code newTotal} steps from the current step (the cosine keeps its phase). */
    private void extendTo(long newTotal) {
        schedule = schedule.extendedTo(step, newTotal);
        totalSteps = newTotal;
        budgets.add(new TrainerState.Budget(step, o.describeBudget(), newTotal));
    }

    public ModelConfig config() { return config; }

    public long step() { return step; }

    public long totalSteps() { return totalSteps; }

    public float[] params() { return params; }

    /** Runs until the budget is spent; saves every {@code saveEvery} steps and at the end. */
    public void run(Listener listener) throws IOException {
        if (schedule == null) {
            if (totalSteps == 0) totalSteps = Math.max(1, (long) (o.minutes() * 60 / dist.broadcast(secondsPerStep())));
            schedule = new LrSchedule(o.lr(), o.minLr(), warmup(), totalSteps);
            budgets.add(new TrainerState.Budget(0, o.describeBudget(), totalSteps));
        } else if (extendByMinutes) {
            long more = (long) ((o.minutes() * 60 - elapsedBefore) / dist.broadcast(secondsPerStep()));
            if (step + more <= totalSteps) {
                throw new IllegalArgumentException("resume: --minutes " + o.minutes() + " does not extend the run: it has run "
                        + String.format(Locale.ROOT, "%.1f", elapsedBefore / 60) + " minutes and has " + (totalSteps - step)
                        + " of its " + totalSteps + " steps left; give more minutes, or --steps");
            }
            extendTo(step + more);
            extendByMinutes = false;
        }
        checkRanksAgree();
        if (dist.isRoot()) {
            Files.createDirectories(out);
            truncateMetrics();
        }
        listener.onStart(step, totalSteps, o);
        int ranks = dist.size(), rank = dist.rank();
        int micros = ranks * o.gradAccum(); // the step's micro-batches, over all ranks
        long tokensPerStep = o.tokensPerStep() * ranks;
        double[] stats = new double[8];
        int n = o.batch() * o.seqLen();
        int[] in = new int[n], tgt = new int[n];
        long start = System.nanoTime();
        long lastSave = step;
        long endStep = o.stopAfter() > 0 ? Math.min(totalSteps, step + o.stopAfter()) : totalSteps;
        while (step < endStep) {
            long t0 = System.nanoTime();
            Arrays.fill(grads, 0f);
            double loss = 0, lm = 0, auxA = 0, auxM = 0, hA = 0, hxA = 0, hM = 0, hxM = 0;
            long first = train.position(); // micro-batch j of this step is draw first + j
            for (int micro = 0; micro < o.gradAccum(); micro++) {
                if (ranks > 1) train.seek(first + (long) micro * ranks + rank);
                train.next(in, tgt, o.batch(), o.seqLen());
                Transformer.Loss l = model.forwardBackward(in, tgt, o.batch(), o.seqLen(), 1f / micros);
                loss += l.total() / micros;
                lm += l.lm() / micros;
                auxA += l.auxAttention() / micros;
                auxM += l.auxMlp() / micros;
                hA += l.attnMarginalEntropy() / micros;
                hxA += l.attnConditionalEntropy() / micros;
                hM += l.mlpMarginalEntropy() / micros;
                hxM += l.mlpConditionalEntropy() / micros;
            }
            if (ranks > 1) {
                train.seek(first + micros);
                dist.allreduceSum(grads, 0, grads.length);
                stats[0] = loss; stats[1] = lm; stats[2] = auxA; stats[3] = auxM;
                stats[4] = hA; stats[5] = hxA; stats[6] = hM; stats[7] = hxM;
                dist.allreduceSum(stats);
                loss = stats[0]; lm = stats[1]; auxA = stats[2]; auxM = stats[3];
                hA = stats[4]; hxA = stats[5]; hM = stats[6]; hxM = stats[7];
            }
            double lr = schedule.lr(step + 1);
            double norm = opt.step(params, grads, (float) lr, o.clip());
            step++;
            tokensSeen += tokensPerStep;
            double sec = (System.nanoTime() - t0) / 1e9;
            double elapsed = elapsedBefore + (System.nanoTime() - start) / 1e9;
            double valLoss = Double.NaN;
            if (dist.isRoot() && val != null && o.evalEvery() > 0 && (step % o.evalEvery() == 0 || step == totalSteps)) {
                valLoss = evaluate(o.evalBatches());
                lastVal = valLoss;
            }
            StepMetrics m = new StepMetrics(step, totalSteps, tokensSeen, loss, lm, auxA, auxM, hA, hxA, hM, hxM,
                    lr, norm, tokensPerStep / sec, elapsed, valLoss);
            if (dist.isRoot()) appendMetrics(m);
            listener.onStep(m);
            if (!Double.isFinite(loss)) {
                save(elapsed);
                // The settings' doing, not a bug: reported as bad input (exit 2) by the command line.
                // Every rank holds the same reduced loss, so all of them stop here together.
                throw new CollectiveFailure("loss became " + loss + " at step " + step
                        + "; lower --lr (now " + o.lr() + ") or check the data");
            }
            if ((o.saveEvery() > 0 && step - lastSave >= o.saveEvery()) || step == endStep) {
                save(elapsed);
                lastSave = step;
                if (dist.isRoot()) listener.onSave(step, out);
            }
        }
    }

    /**
     * Before the first step of a data-parallel job: rank 0's hashes of what decides the numbers
     * (the model, the data and its position, the options, the GEMM backend and threads, the step
     * and budget) against every rank's; a mismatch stops all ranks together, naming what differs.
     */
    private void checkRanksAgree() {
        if (dist.size() == 1) return;
        String[] what = {"model config", "data (fingerprint and position)", "training options", "kernels and threads",
                "step and budget"};
        String[] parts = {ConfigJson.toJson(config), dataFingerprint + " @" + train.position(),
                new Options(o.batch(), o.seqLen(), o.gradAccum(), o.lr(), o.minLr(), o.warmupSteps(), o.weightDecay(), o.clip(),
                        o.seed(), o.totalSteps(), o.minutes(), 0, 0, 0, o.stopAfter()).toString(),
                kernels + " x" + threads, step + "/" + totalSteps + " " + schedule};
        byte[] mine = new byte[32 * parts.length];
        try {
            for (int i = 0; i < parts.length; i++) {
                byte[] d = MessageDigest.getInstance("SHA-256").digest(parts[i].getBytes(StandardCharsets.UTF_8));
                System.arraycopy(d, 0, mine, 32 * i, 32);
            }
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e); // every JDK has SHA-256
        }
        byte[] root = mine.clone();
        dist.broadcast(root);
        double[] differs = new double[parts.length];
        for (int i = 0; i < parts.length; i++) {
            differs[i] = Arrays.equals(mine, 32 * i, 32 * i + 32, root, 32 * i, 32 * i + 32) ? 0 : 1;
        }
        dist.allreduceSum(differs);
        List<String> bad = new ArrayList<>();
        for (int i = 0; i < parts.length; i++) {
            if (differs[i] > 0) bad.add(what[i] + " (" + (int) differs[i] + " of " + dist.size() + " ranks differ from rank 0)");
        }
        if (!bad.isEmpty()) {
            throw new CollectiveFailure("the " + dist.size() + " ranks disagree before step " + (step + 1) + " on the "
                    + String.join(", the ", bad) + "; start every rank with the same command line, data and checkpoint");
        }
    }

    private long warmup() {
        return o.warmupSteps() >= 0 ? Math.min(o.warmupSteps(), totalSteps) : Math.max(1, Math.min(200, totalSteps / 20));
    }

    /** For a time budget: times two forward+backward passes (no update); the seconds one step will take. */
    private double secondsPerStep() {
        int n = o.batch() * o.seqLen();
        int[] in = new int[n], tgt = new int[n];
        long pos = train.position();
        train.next(in, tgt, o.batch(), o.seqLen());
        double perMicro = new StepTiming(model, in, tgt, o.batch(), o.seqLen()).fastestSeconds(1, 1); // after a JIT warm-up pass
        Arrays.fill(grads, 0f);
        train.seek(pos);
        return perMicro * o.gradAccum() * 1.03; // the optimizer and bookkeeping
    }

    /** The job this trainer is one rank of. */
    public Dist dist() { return dist; }

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

    /**
     * Writes the checkpoint (weights, moments, state, config, tokenizer) as one atomic change; in a
     * data-parallel job rank 0 writes it (all ranks hold the same weights and moments) and the
     * others do nothing.
     */
    public void save(double elapsedSeconds) throws IOException {
        if (schedule == null) throw new IllegalStateException("save before run: the step count is not fixed yet");
        if (!dist.isRoot()) return;
        TrainerState s = new TrainerState(TrainerState.FORMAT, step, totalSteps, tokensSeen, train.position(), o.seed(),
                o.batch(), o.seqLen(), o.gradAccum(), o.lr(), o.minLr(), schedule.warmupSteps(), o.weightDecay(), o.clip(),
                elapsedSeconds, dataDescription, dataFingerprint, kernels, threads, schedule.fromStep(),
                schedule.fromProgress(), List.copyOf(budgets), o.saveEvery(), o.evalEvery(), o.evalBatches(), o.json(),
                dist.size());
        CheckpointFiles cf = new CheckpointFiles(out)
                .text(ModelFiles.CONFIG, ConfigJson.toJson(config) + "\n")
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
