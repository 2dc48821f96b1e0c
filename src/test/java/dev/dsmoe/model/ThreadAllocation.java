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

    /** Whether the JVM counts allocation per thread (HotSpot does by default). */
    public static boolean supported() {
        return ((com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean()).isThreadAllocatedMemoryEnabled();
    }
}
