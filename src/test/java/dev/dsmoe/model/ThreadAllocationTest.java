package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The allocation counter of the no-growth tests ({@link TrainingStepAllocationTest}, DecodeStepAllocationTest). */
class ThreadAllocationTest {

    static volatile Object sink;

    /** A thread that allocated and ends between two readings (an idle pool's worker timing out) takes nothing off the count. */
    @Test
    void aThreadEndingBetweenReadingsIsNotNegativeAllocation() throws Exception {
        Object go = new Object();
        Thread worker = Thread.ofPlatform().start(() -> {
            for (int i = 0; i < 64; i++) sink = new byte[64 * 1024];
            synchronized (go) {
                try {
                    go.wait();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        });
        while (worker.getState() != Thread.State.WAITING) Thread.sleep(1);
        ThreadAllocation.Reading before = ThreadAllocation.Reading.now();
        long all = ThreadAllocation.allThreads();
        synchronized (go) {
            go.notifyAll();
        }
        worker.join();
        assertTrue(ThreadAllocation.allThreads() - all < -1_000_000, "the plain difference loses the ended thread's 4 MiB");
        long since = before.allocatedSince();
        assertTrue(since >= 0 && since < 1_000_000, since + " B");
    }
}
