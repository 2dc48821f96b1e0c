package dev.dsmoe.train;

/**
 * Training batches: input ids and next-token targets for a {@code [batch, seq]} step. The
 * position is all the state needed to continue exactly where a run stopped.
 */
public interface BatchSource {

    /** Fills {@code input[batch·seq]} and {@code target[batch·seq]} with the next batch and advances. */
    void next(int[] input, int[] target, int batch, int seq);

    /** Batches drawn so far (saved in trainer_state.json). */
    long position();

    /** Continues as if {@code position} batches had been drawn. */
    void seek(long position);
}
