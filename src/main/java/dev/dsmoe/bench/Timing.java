package dev.dsmoe.bench;

import java.util.Arrays;

/** Wall-clock timing with warm-up and medians (what every table in BENCHMARKS.md reports). */
public final class Timing {
    private Timing() {}

    /** Runs {@code body} {@code warmup} times untimed, then {@code repeats} times; returns the median seconds. */
    public static double medianSeconds(int warmup, int repeats, Runnable body) {
        for (int i = 0; i < warmup; i++) body.run();
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
