package dev.dsmoe.data;

/**
 * One training or evaluation step's tokens: {@code inputs} and {@code targets} are row-major
 * {@code [batch, seq]}, {@code targets[b][t] = inputs[b][t+1]} within a window of seq+1 tokens.
 * Only the first {@link #rows} rows are valid (fewer than {@code batch} only at the end of a
 * sequential pass). Reused across steps: a sampler fills it in place.
 */
public final class Batch {
    public final int batch;
    public final int seq;
    public final int[] inputs;
    public final int[] targets;
    /** Valid rows. */
    public int rows;
    final int[] window;

    public Batch(int batch, int seq) {
        if (batch < 1 || seq < 1) throw new IllegalArgumentException("batch and seq must be >= 1, got " + batch + " x " + seq);
        this.batch = batch;
        this.seq = seq;
        this.inputs = new int[batch * seq];
        this.targets = new int[batch * seq];
        this.window = new int[seq + 1];
    }
}
