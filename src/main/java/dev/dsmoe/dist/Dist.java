package dev.dsmoe.dist;

import java.nio.ByteBuffer;

/**
 * The processes of a data-parallel job, as the trainer sees them: this process's rank among
 * {@link #size()}, broadcasts from rank 0 and in-place sums across all ranks. {@link #single()}
 * is the one-process job (every operation a no-op); {@link Mpi} is the job {@code mpirun} or
 * {@code srun} started.
 *
 * <p>Every rank must make the same calls in the same order (MPI's collectives); a rank that
 * fails alone calls {@link #abort}, which ends the whole job, so the others never wait forever.
 */
public interface Dist extends AutoCloseable {

    /** This process's rank, 0 .. size-1; rank 0 prints, writes checkpoints and metrics. */
    int rank();

    /** The number of ranks (K). */
    int size();

    /** Replaces {@code a[off, off+len)} on every rank with rank 0's values. */
    void broadcast(float[] a, int off, int len);

    /** Replaces {@code a} on every rank with rank 0's bytes. */
    void broadcast(byte[] a);

    /** Replaces {@code a[off, off+len)} on every rank with the sum over all ranks (in place, bucketed). */
    void allreduceSum(float[] a, int off, int len);

    /** Replaces {@code a} on every rank with the element-wise sum over all ranks. */
    void allreduceSum(double[] a);

    /** Ends the whole job with {@code status} (a failure on this rank alone); does not return. */
    void abort(int status);

    /** Leaves the job (MPI_Finalize); idempotent. */
    @Override
    void close();

    /** A one-line description for messages ("MPI rank 1 of 2 (Open MPI v4.1.4)"). */
    String describe();

    default boolean isRoot() {
        return rank() == 0;
    }

    default void broadcast(float[] a) {
        broadcast(a, 0, a.length);
    }

    /** Rank 0's {@code v}. */
    default long broadcast(long v) {
        byte[] b = ByteBuffer.allocate(Long.BYTES).putLong(v).array();
        broadcast(b);
        return ByteBuffer.wrap(b).getLong();
    }

    /** Rank 0's {@code v}. */
    default double broadcast(double v) {
        return Double.longBitsToDouble(broadcast(Double.doubleToRawLongBits(v)));
    }

    /** Whether {@code mine} holds on any rank (every rank gets the same answer). */
    default boolean anyOf(boolean mine) {
        double[] f = {mine ? 1 : 0};
        allreduceSum(f);
        return f[0] > 0;
    }

    /** The one-process job: rank 0 of 1, and every collective leaves its argument as it is. */
    static Dist single() {
        return Single.INSTANCE;
    }

    /** See {@link #single()}. */
    final class Single implements Dist {
        static final Single INSTANCE = new Single();

        private Single() {}

        @Override public int rank() { return 0; }
        @Override public int size() { return 1; }
        @Override public void broadcast(float[] a, int off, int len) {}
        @Override public void broadcast(byte[] a) {}
        @Override public void allreduceSum(float[] a, int off, int len) {}
        @Override public void allreduceSum(double[] a) {}
        @Override public void abort(int status) { Runtime.getRuntime().halt(status); }
        @Override public void close() {}
        @Override public String describe() { return "one process"; }
    }
}
