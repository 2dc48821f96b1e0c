package dev.dsmoe.bench;

import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.util.Arrays;

/** Wall-clock timing with warm-up and medians (what every table in BENCHMARKS.md reports). */
public final class Timing {
    private Timing() {}

    /**
     * Untimed warm-up, at least this long as well as at least the runs asked for: C2 compiles a
     * Vector API kernel only after its first calls, and until then the kernel runs its boxing
     * fallback, several times slower (a mat-vec measured 9 or 19 GB/s from one run to the next
     * with three short warm-up runs).
     */
    static final double MIN_WARMUP_SECONDS = 1.0;
    /**
     * The warm-up also goes on while the JIT is still busy: it ends after a window of at least
     * this long in which the compilers worked less than {@link #QUIET_SHARE} of the wall time. On
     * 2 cores the compile threads take time from the benchmark's own, and a model's first
     * decode ran at a third of its speed for seconds (a trained small DS-MoE: 700 tok/s after 3
     * warm-up runs of 64 tokens, 2087 after 30; BENCHMARKS.md, session 10).
     */
    static final double QUIET_WINDOW_SECONDS = 0.5;
    static final double QUIET_SHARE = 0.01;
    /** The warm-up ends here whatever the JIT does (a JVM whose compilers never rest). */
    static final double MAX_WARMUP_SECONDS = 30;

    /** Compilation time so far in ms, or -1 where the JVM does not report it. */
    private static long compileMillis() {
        CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        return jit != null && jit.isCompilationTimeMonitoringSupported() ? jit.getTotalCompilationTime() : -1;
    }

    /**
     * When an untimed warm-up may end: after at least {@code runs} runs, {@link #MIN_WARMUP_SECONDS}
     * and a quiet JIT window (or {@link #MAX_WARMUP_SECONDS}). Call
     * {@link #another} after each warm-up run.
     */
    public static final class WarmUp {
        private final int runs;
        private final double minSeconds;
        private final long start = System.nanoTime();
        private long windowStart = start, windowCompile = compileMillis();
        private boolean quiet;
        private int done;

        public WarmUp(int runs) {
            this(runs, MIN_WARMUP_SECONDS);
        }

        /**
         * With {@code minSeconds} in place of {@link #MIN_WARMUP_SECONDS}; 0 asks for the runs
         * alone (no wait for the JIT either: a caller that wants an exact count of runs).
         */
        public WarmUp(int runs, double minSeconds) {
            this.runs = runs;
            this.minSeconds = minSeconds;
        }

        /** Counts the run just made; whether to make another. */
        public boolean another() {
            done++;
            long now = System.nanoTime();
            if (now - windowStart >= QUIET_WINDOW_SECONDS * 1e9) {
                long c = compileMillis();
                quiet = c < 0 || (c - windowCompile) * 1e6 <= QUIET_SHARE * (now - windowStart);
                windowStart = now;
                windowCompile = c;
            }
            if (now - start >= MAX_WARMUP_SECONDS * 1e9) return false;
            return done < runs || (minSeconds > 0 && (now - start < minSeconds * 1e9 || !quiet));
        }
    }

    /** One run of a benchmark: its timed seconds (what it does untimed, such as a prefill before a timed decode, left out). */
    @FunctionalInterface
    public interface Run {
        /** {@code label}: "warm-up N" or "i/repeats", for progress lines. */
        double seconds(String label);
    }

    /** Runs {@code run} untimed as {@link WarmUp} says ({@code warmup} runs at least), then {@code repeats} times; their seconds. */
    public static double[] samples(int warmup, int repeats, Run run) {
        WarmUp w = new WarmUp(warmup);
        int n = 0;
        do {
            run.seconds("warm-up " + ++n);
        } while (w.another());
        double[] t = new double[Math.max(1, repeats)];
        for (int i = 0; i < t.length; i++) t[i] = run.seconds((i + 1) + "/" + t.length);
        return t;
    }

    /** {@link #samples} of {@code body} timed whole; their median. */
    public static double medianSeconds(int warmup, int repeats, Runnable body) {
        return median(samples(warmup, repeats, label -> {
            long s = System.nanoTime();
            body.run();
            return (System.nanoTime() - s) / 1e9;
        }));
    }

    /** The median of {@code a} (the mean of the middle two for an even count). */
    public static double median(double[] a) {
        double[] t = a.clone();
        Arrays.sort(t);
        return t.length % 2 == 1 ? t[t.length / 2] : 0.5 * (t[t.length / 2 - 1] + t[t.length / 2]);
    }
}
