package dev.dsmoe.bench;

import java.util.Arrays;

/** Wall-clock timing with warm-up and medians (what every table in BENCHMARKS.md reports). */
public final class Timing {
    private Timing() {}

    /**
     * Untimed warm-up, at least this long as well as at least {@code warmup} runs: C2 compiles a
     * Vector API kernel only after its first calls, and until then the kernel runs its boxing
     * fallback, several times slower (a mat-vec measured 9 or 19 GB/s from one run to the next
     * with three short warm-up runs).
     */
    static final double MIN_WARMUP_SECONDS = 1.0;

    /**
     * Runs {@code body} untimed {@code warmup} times and for at least {@link #MIN_WARMUP_SECONDS}
     * (at most 1000 runs), then {@code repeats} times; returns the median seconds.
     */
    public static double medianSeconds(int warmup, int repeats, Runnable body) {
        long start = System.nanoTime();
        for (int i = 0; i < 1000 && (i < warmup || System.nanoTime() - start < MIN_WARMUP_SECONDS * 1e9); i++) {
            body.run();
        }
        double[] t = new double[Math.max(1, repeats)];
        for (int i = 0; i < t.length; i++) {
            long s = System.nanoTime();
            body.run();
            t[i] = (System.nanoTime() - s) / 1e9;
        }
        Arrays.sort(t);
        return t.length % 2 == 1 ? t[t.length / 2] : 0.5 * (t[t.length / 2 - 1] + t[t.length / 2]);
    }
}
