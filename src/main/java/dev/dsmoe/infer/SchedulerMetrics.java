package dev.dsmoe.infer;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * What a {@link Scheduler} has done, for monitoring: requests running and waiting, tokens in and
 * out, requests by how they ended, latency and batch-size histograms, KV blocks in use, and the
 * experts the routers activated per token and layer type. Written by the scheduler's thread,
 * read from any (each figure on its own; a reader may see one step's figures half updated).
 */
public final class SchedulerMetrics {

    /** A cumulative histogram with fixed upper bounds (Prometheus style). */
    public static final class Histogram {
        private final double[] bounds;
        private final AtomicLongArray counts;
        private final AtomicLong count = new AtomicLong();
        private volatile double sum;

        Histogram(double... bounds) {
            this.bounds = bounds.clone();
            this.counts = new AtomicLongArray(bounds.length);
        }

        synchronized void add(double v) {
            for (int i = 0; i < bounds.length; i++) if (v <= bounds[i]) counts.incrementAndGet(i);
            count.incrementAndGet();
            sum += v;
        }

        /** Upper bounds of the buckets (the last, +Inf, is implicit). */
        public double[] bounds() {
            return bounds.clone();
        }

        /** Observations at or below {@code bounds()[i]}. */
        public long cumulative(int i) {
            return counts.get(i);
        }

        public long count() {
            return count.get();
        }

        public double sum() {
            return sum;
        }
    }

    private static final double[] SECONDS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

    volatile int running, waiting, kvBlocksInUse, kvBlocks;
    public final AtomicLong promptTokens = new AtomicLong(), completionTokens = new AtomicLong(), steps = new AtomicLong(),
            preemptions = new AtomicLong(), failures = new AtomicLong();
    private final AtomicLongArray finished = new AtomicLongArray(Scheduler.Finish.values().length);
    public final Histogram timeToFirstToken = new Histogram(SECONDS), interTokenLatency = new Histogram(SECONDS),
            stepSeconds = new Histogram(SECONDS), batchSize = new Histogram(1, 2, 4, 8, 16, 32, 64, 128, 256);
    private final long[] attActive, mlpActive;
    private long routedTokens;

    SchedulerMetrics(int layers) {
        attActive = new long[layers];
        mlpActive = new long[layers];
    }

    void step(int sequences, int tokens, long nanos, int blocksInUse, int blocks) {
        steps.incrementAndGet();
        batchSize.add(sequences);
        stepSeconds.add(nanos / 1e9);
        kvBlocksInUse = blocksInUse;
        kvBlocks = blocks;
    }

    void ended(Scheduler.Finish how) {
        finished.incrementAndGet(how.ordinal());
    }

    synchronized void addExperts(long[] att, long[] mlp, long routed) {
        for (int l = 0; l < att.length; l++) {
            attActive[l] += att[l];
            mlpActive[l] += mlp[l];
        }
        routedTokens += routed;
    }

    public int running() {
        return running;
    }

    public int waiting() {
        return waiting;
    }

    public int kvBlocksInUse() {
        return kvBlocksInUse;
    }

    public int kvBlocks() {
        return kvBlocks;
    }

    /** Requests that ended as {@code how}. */
    public long finished(Scheduler.Finish how) {
        return finished.get(how.ordinal());
    }

    /** Mean attention experts per token in each layer over finished and preempted requests (NaN before any). */
    public synchronized double[] meanActiveAttention() {
        return mean(attActive);
    }

    /** Mean MLP experts per token in each layer over finished and preempted requests (NaN before any). */
    public synchronized double[] meanActiveMlp() {
        return mean(mlpActive);
    }

    private double[] mean(long[] a) {
        double[] m = new double[a.length];
        for (int l = 0; l < a.length; l++) m[l] = routedTokens > 0 ? (double) a[l] / routedTokens : Double.NaN;
        return m;
    }
}
