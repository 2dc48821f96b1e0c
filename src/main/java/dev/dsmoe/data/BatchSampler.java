package dev.dsmoe.data;

/**
 * Cuts {@code [batch, seq]} steps out of a shard: windows of {@code seq+1} consecutive tokens,
 * the first {@code seq} as inputs and the last {@code seq} as next-token targets.
 * <ul>
 *   <li>{@link #random}: each row a window at a uniformly random start; the starts of step
 *       {@code s} depend only on (seed, s), so a resumed run sees the same data as an
 *       uninterrupted one ({@link #fill(long, Batch)} with the step, or {@link #seek}).</li>
 *   <li>{@link #sequential}: windows at 0, seq, 2·seq, ... (each token predicted once), in
 *       order, for evaluation; the last step may have fewer rows, and after it steps are empty.</li>
 * </ul>
 * Reading is memory-mapped; a sampler holds no tokens of its own. Not thread-safe (one per loop),
 * {@link #fill(long, Batch)} is when each thread has its own batch.
 */
public final class BatchSampler {
    private final TokenShard shard;
    private final int batch;
    private final int seq;
    private final boolean random;
    private final long seed;
    private long step;

    private BatchSampler(TokenShard shard, int batch, int seq, boolean random, long seed) {
        if (batch < 1 || seq < 1) throw new IllegalArgumentException("batch and seq must be >= 1, got " + batch + " x " + seq);
        if (shard.size() < seq + 1L) {
            throw new IllegalArgumentException(shard.file() + ": has " + shard.size() + " tokens, fewer than one window of seq+1 = "
                    + (seq + 1) + "; use a shorter --seq or a larger corpus");
        }
        this.shard = shard;
        this.batch = batch;
        this.seq = seq;
        this.random = random;
        this.seed = seed;
    }

    /** Random windows, reproducible from {@code seed}. */
    public static BatchSampler random(TokenShard shard, int batch, int seq, long seed) {
        return new BatchSampler(shard, batch, seq, true, seed);
    }

    /** Consecutive windows from the start of the shard (evaluation). */
    public static BatchSampler sequential(TokenShard shard, int batch, int seq) {
        return new BatchSampler(shard, batch, seq, false, 0);
    }

    /** A batch of this sampler's shape. */
    public Batch newBatch() {
        return new Batch(batch, seq);
    }

    /** Windows a sequential pass has: floor((tokens - 1) / seq). */
    public long windows() {
        return (shard.size() - 1) / seq;
    }

    /** Steps in a sequential pass: ceil(windows / batch). */
    public long steps() {
        return (windows() + batch - 1) / batch;
    }

    /** The step {@link #next} fills next. */
    public long step() {
        return step;
    }

    /** Makes {@link #next} continue at {@code step} (resuming a run). */
    public void seek(long step) {
        this.step = step;
    }

    /** Fills {@code out} with step {@link #step()} and advances; returns the valid rows (0 when a sequential pass is over). */
    public int next(Batch out) {
        return fill(step++, out);
    }

    /** Fills {@code out} with step {@code s}; returns the valid rows. */
    public int fill(long s, Batch out) {
        if (out.batch != batch || out.seq != seq) {
            throw new IllegalArgumentException("batch shape " + out.batch + " x " + out.seq + " differs from the sampler's " + batch + " x " + seq);
        }
        int rows = 0;
        long range = shard.size() - seq; // starts 0 .. size-seq-1
        for (int b = 0; b < batch; b++) {
            long start;
            if (random) {
                start = Math.unsignedMultiplyHigh(mix(seed, s * batch + b), range);
            } else {
                long w = s * batch + b;
                if (w >= windows()) break;
                start = w * seq;
            }
            shard.read(start, out.window, 0, seq + 1);
            System.arraycopy(out.window, 0, out.inputs, b * seq, seq);
            System.arraycopy(out.window, 1, out.targets, b * seq, seq);
            rows++;
        }
        out.rows = rows;
        return rows;
    }

    /** A 64-bit hash of (seed, index): SplitMix64's finalizer. */
    static long mix(long seed, long index) {
        long z = seed * 0x9E3779B97F4A7C15L + index * 0xD1B54A32D192ED03L + 0x632BE59BD9B4E019L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
