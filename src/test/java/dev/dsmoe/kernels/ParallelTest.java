package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class ParallelTest {

    @Test
    void everyIndexRunsExactlyOnce() {
        for (int n : new int[] {0, 1, 2, 3, 17, 1000}) {
            int[] hits = new int[n];
            Parallel.forRange(n, (s, e) -> {
                for (int i = s; i < e; i++) hits[i]++;
            });
            for (int i = 0; i < n; i++) assertEquals(1, hits[i], "n=" + n + " i=" + i);
        }
    }

    @Test
    void chunksCoverEveryIndexOnceEachChunkWhole() {
        int before = Parallel.threads();
        try {
            for (int threads : new int[] {1, 2, 4}) {
                Parallel.setThreads(threads);
                for (int n : new int[] {0, 1, 5, 64, 1000}) {
                    for (int chunk : new int[] {1, 7, 64, 5000}) {
                        int[] hits = new int[n];
                        Set<String> calls = ConcurrentHashMap.newKeySet();
                        Parallel.forChunks(n, chunk, (s, e) -> {
                            calls.add(s + ":" + e);
                            for (int i = s; i < e; i++) hits[i]++;
                        });
                        String what = threads + " threads, n=" + n + ", chunk=" + chunk;
                        for (int i = 0; i < n; i++) assertEquals(1, hits[i], what + " i=" + i);
                        assertEquals((n + chunk - 1) / chunk, calls.size(), what + ": one call per chunk");
                        for (String c : calls) {
                            int s = Integer.parseInt(c.split(":")[0]), e = Integer.parseInt(c.split(":")[1]);
                            assertEquals(0, s % chunk, what + ": a chunk starts at a multiple of the chunk");
                            assertEquals(Math.min(n, s + chunk), e, what + ": a chunk is whole, or the last one");
                        }
                    }
                }
            }
            assertThrows(IllegalArgumentException.class, () -> Parallel.forChunks(4, 0, (s, e) -> {}));
        } finally {
            Parallel.setThreads(before);
        }
    }

    @Test
    void nestedRegionRunsSeriallyOnTheCallingThread() {
        int before = Parallel.threads();
        // a worker must open the nested region too: with one thread nothing is nested at all
        Parallel.setThreads(Math.max(2, before));
        try {
            Set<Thread> outerThreads = ConcurrentHashMap.newKeySet();
            AtomicInteger inner = new AtomicInteger();
            // a nested region that waits on the pool deadlocks: fail instead of hanging the run
            assertTimeoutPreemptively(Duration.ofSeconds(30), () -> Parallel.forRange(4, (s, e) -> {
                Thread outer = Thread.currentThread();
                outerThreads.add(outer);
                for (int i = s; i < e; i++) {
                    Parallel.forRange(100, (s2, e2) -> {
                        assertEquals(outer, Thread.currentThread());
                        assertEquals(0, s2);
                        assertEquals(100, e2);
                        inner.addAndGet(e2 - s2);
                    });
                }
            }));
            assertTrue(outerThreads.size() >= 2, "the outer region ran on " + outerThreads.size() + " thread(s)");
            assertEquals(400, inner.get());
        } finally {
            Parallel.setThreads(before);
        }
    }

    @Test
    void exceptionInAWorkerReachesTheCaller() {
        int before = Parallel.threads();
        Parallel.setThreads(2);
        try {
            IllegalStateException e = assertThrows(IllegalStateException.class, () ->
                    Parallel.forRange(10, (s, end) -> {
                        if (end == 10) throw new IllegalStateException("boom at " + s);
                    }));
            assertTrue(e.getMessage().startsWith("boom"));
            // The pool still works afterwards.
            int[] hits = new int[10];
            Parallel.forRange(10, (s, end) -> { for (int i = s; i < end; i++) hits[i]++; });
            for (int h : hits) assertEquals(1, h);
        } finally {
            Parallel.setThreads(before);
        }
    }

    @Test
    void regionsFromSeveralThreadsAtOnceEachSeeEveryIndexOnce() throws Exception {
        int before = Parallel.threads();
        Parallel.setThreads(4); // more workers than cores: chunks wait for a core
        try {
            int callers = 3, regions = 2000;
            Thread[] threads = new Thread[callers];
            Throwable[] failure = new Throwable[callers];
            for (int t = 0; t < callers; t++) {
                int id = t;
                threads[t] = new Thread(() -> {
                    try {
                        for (int r = 0; r < regions; r++) {
                            int n = 1 + (r * 7 + id) % 97;
                            int[] hits = new int[n];
                            Parallel.forRange(n, (s, e) -> {
                                for (int i = s; i < e; i++) hits[i]++;
                            });
                            for (int i = 0; i < n; i++) {
                                if (hits[i] != 1) throw new AssertionError("caller " + id + " region " + r + " index " + i + ": " + hits[i]);
                            }
                        }
                    } catch (Throwable e) {
                        failure[id] = e;
                    }
                });
                threads[t].setDaemon(true); // a hang fails the test instead of blocking the JVM's exit
                threads[t].start();
            }
            for (Thread t : threads) t.join(30_000);
            for (int t = 0; t < callers; t++) {
                if (failure[t] != null) throw new AssertionError("caller " + t, failure[t]);
                assertTrue(!threads[t].isAlive(), "caller " + t + " did not finish");
            }
        } finally {
            Parallel.setThreads(before);
        }
    }

    @Test
    void grainKeepsSmallWorkOnOneThread() {
        Thread caller = Thread.currentThread();
        Parallel.forRange(10, 64, (s, e) -> {
            assertEquals(caller, Thread.currentThread());
            assertEquals(10, e - s);
        });
    }
}
