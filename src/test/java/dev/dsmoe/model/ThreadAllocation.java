package dev.dsmoe.model;

import java.lang.management.ManagementFactory;

/** Heap bytes allocated so far, for the tests that check a step allocates nothing that grows. */
public final class ThreadAllocation {

    private ThreadAllocation() {}

    /** Bytes allocated by every live Java thread (the caller and the kernel workers). */
    public static long allThreads() {
        var bean = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long sum = 0;
        for (long b : bean.getThreadAllocatedBytes(bean.getAllThreadIds())) {
            if (b > 0) sum += b;
        }
        return sum;
    }

    /** Bytes allocated so far by each live Java thread: {@code bytes[i]} by the thread {@code ids[i]}. */
    record Reading(long[] ids, long[] bytes) {
        static Reading now() {
            var bean = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            long[] ids = bean.getAllThreadIds();
            return new Reading(ids, bean.getThreadAllocatedBytes(ids));
        }

        /**
         * Bytes allocated since this reading by the threads alive now, a thread started since
         * counting in full. A thread that ended in between is left out: an idle pool worker or
         * virtual-thread carrier left by an earlier test (HTTP clients and servers) that times out
         * mid-block takes its whole count with it, which a difference of {@link #allThreads()}
         * reads as negative allocation.
         */
        long allocatedSince() {
            Reading after = now();
            long sum = 0;
            for (int i = 0; i < after.ids.length; i++) {
                if (after.bytes[i] <= 0) continue;
                long was = 0;
                for (int j = 0; j < ids.length; j++) {
                    if (ids[j] == after.ids[i]) {
                        was = Math.max(bytes[j], 0);
                        break;
                    }
                }
                sum += after.bytes[i] - was;
            }
            return sum;
        }
    }

    /**
     * Least bytes per unit of work over repeated blocks, once warm: {@code setup} runs unmeasured
     * before each block, {@code block} does {@code units} units. Code the JIT has not compiled yet
     * boxes its vectors and allocates, and under load compilation lags, so rather than a fixed
     * number of blocks this repeats until the least has not improved for {@value #SETTLED}
     * blocks in a row (at least {@code minBlocks}, at most 60 s).
     */
    public static double settledLeastPerUnit(int minBlocks, int units, Runnable setup, Runnable block) {
        double best = Double.MAX_VALUE;
        int sinceBetter = 0;
        long deadline = System.nanoTime() + 60_000_000_000L;
        for (int b = 0; b < minBlocks || (sinceBetter < SETTLED && System.nanoTime() < deadline); b++) {
            setup.run();
            Reading before = Reading.now();
            block.run();
            double perUnit = before.allocatedSince() / (double) units;
            if (perUnit < best) {
                best = perUnit;
                sinceBetter = 0;
            } else {
                sinceBetter++;
            }
        }
        return best;
    }

    private static final int SETTLED = 10;

    /** Whether the JVM counts allocation per thread (HotSpot does by default). */
    public static boolean supported() {
        return ((com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean()).isThreadAllocatedMemoryEnabled();
    }
}
