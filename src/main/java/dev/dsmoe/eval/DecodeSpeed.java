package dev.dsmoe.eval;

import dev.dsmoe.bench.Timing;
import dev.dsmoe.data.TokenShard;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Locale;
import java.util.Objects;

/**
 * Single-stream decode speed of one engine under several expert selections, or of several
 * engines ({@link #measureSubjects}: models side by side), measured together: each run prefills a
 * fixed prompt (untimed), then decodes {@code decodeTokens} tokens, each the next token of the
 * same text (teacher-forced, so every subject reads the same tokens), and times the decode. The
 * runs go round by round, each round one run of every subject, so a machine that slows down
 * mid-way slows all subjects alike (a shared machine's speed drifts by tens of percent within
 * minutes: speeds timed one model after the other make ratios of two moments); untimed warm-up rounds come first
 * (at least one, for at least {@code warmupSeconds}, and until the JIT is quiet, as
 * {@link Timing.WarmUp} says: the JIT compiles the decode path after its first calls). Each selection's figure is the median of {@code repeats} timed runs.
 * Uses only the engines' single-sequence API ({@code setSelection}, {@code prefill},
 * {@code decode}); each engine's selection is put back afterwards and its statistics are reset.
 */
public final class DecodeSpeed {

    /** Decoded tokens per run of {@code eval --sweep}: 32, or at most half the context. */
    public static final int DEFAULT_DECODE = 32;
    /** The prompt before the decoded tokens, cut to what the context leaves. */
    public static final int DEFAULT_PROMPT = 32;
    public static final int DEFAULT_REPEATS = 3;
    /** Least warm-up time before the timed rounds (as {@code bench}'s Timing). */
    public static final double DEFAULT_WARMUP_SECONDS = 1.0;

    /** Called after each run: runs done of {@code total} (warm-up included) and seconds since the start. */
    public interface Progress {
        void update(long done, long total, double seconds);

        Progress NONE = (d, t, s) -> { };
    }

    /** What one run times: an engine under a selection, named by {@code label} in the results. */
    public record Subject(String label, Engine engine, ExpertSelection selection) {
        public Subject {
            Objects.requireNonNull(label, "label");
            Objects.requireNonNull(engine, "engine");
            Objects.requireNonNull(selection, "selection");
        }
    }

    /** One subject's measurement (named by its selection, or by its label for {@link #measureSubjects}): decoded tokens per second (median of {@code repeats} runs). */
    public record Result(String selection, int promptTokens, int decodeTokens, int repeats, double tokensPerSecond) {

        /** The measurement, in words (for a note under a table). */
        public String describe() {
            return String.format(Locale.ROOT, "single-stream decode of %d tokens after a %d-token prompt, "
                    + "teacher-forced (the same tokens under every selection), median of %d runs after a warm-up",
                    decodeTokens, promptTokens, repeats);
        }
    }

    private final Engine engine;
    private final int[] prompt, next;
    private final int repeats;
    private final double warmupSeconds;

    /**
     * Runs that prefill {@code text[0..promptTokens)} and decode the following
     * {@code decodeTokens} tokens of {@code text} (which must hold both).
     */
    public DecodeSpeed(Engine engine, int[] text, int promptTokens, int decodeTokens, int repeats, double warmupSeconds) {
        this.engine = Objects.requireNonNull(engine, "engine");
        if (promptTokens < 1 || decodeTokens < 1 || repeats < 1 || !(warmupSeconds >= 0)) {
            throw new IllegalArgumentException("prompt, decoded tokens and repeats must be >= 1, the warm-up >= 0 s");
        }
        if ((long) promptTokens + decodeTokens > engine.contextLength()) {
            throw new IllegalArgumentException("a prompt of " + promptTokens + " and " + decodeTokens
                    + " decoded tokens exceed the engine's context of " + engine.contextLength());
        }
        if (text.length < promptTokens + decodeTokens) {
            throw new IllegalArgumentException("the text has " + text.length + " tokens, the runs need "
                    + (promptTokens + decodeTokens));
        }
        this.prompt = Arrays.copyOf(text, promptTokens);
        this.next = Arrays.copyOfRange(text, promptTokens, promptTokens + decodeTokens);
        this.repeats = repeats;
        this.warmupSeconds = warmupSeconds;
    }

    /**
     * Runs on the start of {@code shard}, its tokens repeated if it is shorter than the runs: a
     * prompt of {@code promptTokens}, then {@code decodeTokens} decoded.
     */
    public static DecodeSpeed fromShard(Engine engine, TokenShard shard, int promptTokens, int decodeTokens, int repeats,
                                        double warmupSeconds) {
        if (promptTokens < 1 || decodeTokens < 1) throw new IllegalArgumentException("prompt and decoded tokens must be >= 1");
        return new DecodeSpeed(engine, shard.head(promptTokens + decodeTokens), promptTokens, decodeTokens, repeats, warmupSeconds);
    }

    /** {@link #DEFAULT_DECODE}, or half the context when that is less (at least 1). */
    public static int defaultDecodeTokens(int contextLength) {
        return Math.max(1, Math.min(DEFAULT_DECODE, contextLength / 2));
    }

    /** {@link #DEFAULT_PROMPT}, or what a context of {@code contextLength} leaves beside {@code decodeTokens}. */
    public static int defaultPromptTokens(int contextLength, int decodeTokens) {
        return Math.min(DEFAULT_PROMPT, contextLength - decodeTokens);
    }

    public int promptTokens() {
        return prompt.length;
    }

    public int decodeTokens() {
        return next.length;
    }

    public int repeats() {
        return repeats;
    }

    /** Each selection's decode speed on this engine, in the order given. */
    public List<Result> measure(List<ExpertSelection> selections, Progress progress) {
        List<Subject> subjects = new ArrayList<>();
        for (ExpertSelection s : selections) subjects.add(new Subject(s.toString(), engine, s));
        return measureSubjects(subjects, progress);
    }

    /**
     * Each subject's decode speed, in the order given, round by round over all of them (engines
     * other than this one's included: each must hold the prompt and the decoded tokens).
     */
    public List<Result> measureSubjects(List<Subject> subjects, Progress progress) {
        Objects.requireNonNull(progress, "progress");
        for (Subject s : subjects) {
            if ((long) prompt.length + next.length > s.engine().contextLength()) {
                throw new IllegalArgumentException(s.label() + ": a prompt of " + prompt.length + " and " + next.length
                        + " decoded tokens exceed the engine's context of " + s.engine().contextLength());
            }
        }
        int n = subjects.size();
        Map<Engine, ExpertSelection> saved = new IdentityHashMap<>(); // each engine once, however many subjects share it
        for (Subject s : subjects) saved.putIfAbsent(s.engine(), s.engine().selection());
        double[][] sec = new double[n][repeats];
        long start = System.nanoTime(), done = 0;
        try {
            int round = 0;
            Timing.WarmUp warm = new Timing.WarmUp(1, warmupSeconds);
            do {
                for (Subject s : subjects) {
                    run(s);
                    progress.update(++done, (long) (round + 1 + repeats) * n, secondsSince(start));
                }
                round++;
            } while (warm.another());
            long total = done + (long) repeats * n;
            for (int r = 0; r < repeats; r++) {
                for (int i = 0; i < n; i++) {
                    sec[i][r] = run(subjects.get(i));
                    progress.update(++done, total, secondsSince(start));
                }
            }
        } finally {
            saved.forEach((e, s) -> {
                e.setSelection(s);
                e.resetStats();
            });
        }
        List<Result> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(new Result(subjects.get(i).label(), prompt.length, next.length, repeats, next.length / Timing.median(sec[i])));
        }
        return out;
    }

    /** One run of {@code s}: the prompt untimed, then the decode; its seconds. */
    private double run(Subject s) {
        Engine e = s.engine();
        e.setSelection(s.selection());
        e.prefill(prompt);
        long t0 = System.nanoTime();
        for (int t : next) e.decode(t);
        return (System.nanoTime() - t0) / 1e9;
    }

    private static double secondsSince(long t0) {
        return (System.nanoTime() - t0) / 1e9;
    }
}
