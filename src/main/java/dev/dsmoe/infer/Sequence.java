package dev.dsmoe.infer;

import java.util.Arrays;
import java.util.Objects;

/**
 * One sequence of a batched {@link Engine}: its KV cache blocks (a block table into the engine's
 * paged {@link KvCache}), how many positions it has filled, the most it may fill, its expert
 * selection, and what its routers chose so far (for per-request statistics). Opened by
 * {@link Engine#open}, grown by each step that feeds it tokens, and ended by {@link Engine#close},
 * which returns its blocks.
 */
public final class Sequence {

    final KvCache cache;
    /** Block b holds positions {@code [b·blockSize, (b+1)·blockSize)}; entries past {@link #blocks} are null. */
    final float[][] table;
    private final int capacity;
    private ExpertSelection selection;
    int length, blocks;
    boolean closed;
    final long[] attActive, mlpActive;
    long routedTokens;

    Sequence(KvCache cache, int capacity, ExpertSelection selection, int layers) {
        this.cache = cache;
        this.capacity = capacity;
        this.selection = Objects.requireNonNull(selection, "selection");
        this.table = new float[cache.blocksFor(capacity)][];
        this.attActive = new long[layers];
        this.mlpActive = new long[layers];
    }

    /** Positions filled: the position the next token gets. */
    public int length() {
        return length;
    }

    /** The most positions this sequence may fill (its context). */
    public int capacity() {
        return capacity;
    }

    public ExpertSelection selection() {
        return selection;
    }

    void setSelection(ExpertSelection selection) {
        this.selection = selection;
    }

    /** KV blocks this sequence holds. */
    public int blocks() {
        return blocks;
    }

    /** Blocks more this sequence needs to take {@code tokens} more tokens. */
    public int blocksNeeded(int tokens) {
        return Math.max(0, cache.blocksFor((long) length + tokens) - blocks);
    }

    public boolean isClosed() {
        return closed;
    }

    /** Takes the blocks for {@code tokens} more tokens; false (and nothing taken) when the cache has too few. */
    boolean reserve(int tokens) {
        int need = blocksNeeded(tokens);
        if (need > cache.blocksAvailable()) return false;
        for (int i = 0; i < need; i++) table[blocks++] = cache.take();
        return true;
    }

    /** Keeps the first {@code n} positions and returns the blocks past them. */
    void truncate(int n) {
        if (n < 0 || n > length) throw new IllegalArgumentException("cannot truncate " + length + " positions to " + n);
        length = n;
        int keep = cache.blocksFor(n);
        while (blocks > keep) {
            cache.give(table[--blocks]);
            table[blocks] = null;
        }
    }

    void resetStats() {
        Arrays.fill(attActive, 0);
        Arrays.fill(mlpActive, 0);
        routedTokens = 0;
    }
}
