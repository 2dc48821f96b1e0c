package dev.dsmoe.kernels;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The one thread pool of the engine: a fixed set of workers sized to the cores, used by every
 * kernel that splits work by rows or heads.
 *
 * <p>Work is split statically into contiguous chunks (chunk i always goes to the same index), so
 * a kernel that writes disjoint rows gives bitwise-identical results run after run. A parallel
 * region entered from inside another one runs serially on the calling thread: no nesting.
 */
public final class Parallel {

    /** A body over the half-open index range {@code [start, end)}. */
    @FunctionalInterface
    public interface RangeBody {
        void run(int start, int end);
    }

    private static volatile int threads = defaultThreads();
    private static Worker[] workers = new Worker[0];
    private static final ThreadLocal<Boolean> INSIDE = ThreadLocal.withInitial(() -> Boolean.FALSE);

    private Parallel() {}

    private static int defaultThreads() {
        String env = System.getenv("DSMOE_THREADS");
        if (env != null && !env.isBlank()) {
            try {
                return Math.max(1, Integer.parseInt(env.trim()));
            } catch (NumberFormatException ignored) {
                // fall through to the core count
            }
        }
        return Runtime.getRuntime().availableProcessors();
    }

    /** Number of threads a parallel region uses (the caller counts as one). */
    public static int threads() {
        return threads;
    }

    /** Sets the thread count for later regions; {@code n >= 1}. */
    public static synchronized void setThreads(int n) {
        if (n < 1) throw new IllegalArgumentException("threads must be >= 1, got " + n);
        threads = n;
    }

    /**
     * Runs {@code body} over {@code [0, n)} split into at most {@link #threads()} contiguous
     * chunks of at least {@code grain} indices each; returns when all chunks are done.
     */
    public static void forRange(int n, int grain, RangeBody body) {
        if (n <= 0) return;
        int t = threads;
        int chunks = Math.min(t, Math.max(1, n / Math.max(1, grain)));
        if (chunks <= 1 || INSIDE.get()) {
            body.run(0, n);
            return;
        }
        Worker[] pool = pool(chunks - 1);
        CountDownLatch done = new CountDownLatch(chunks - 1);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        for (int c = 1; c < chunks; c++) {
            int start = (int) ((long) n * c / chunks);
            int end = (int) ((long) n * (c + 1) / chunks);
            pool[c - 1].queue.add(() -> {
                try {
                    body.run(start, end);
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                } finally {
                    done.countDown();
                }
            });
        }
        INSIDE.set(Boolean.TRUE);
        try {
            body.run(0, (int) ((long) n / chunks));
        } catch (Throwable e) {
            failure.compareAndSet(null, e);
        } finally {
            INSIDE.set(Boolean.FALSE);
        }
        try {
            done.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for parallel work", e);
        }
        Throwable f = failure.get();
        if (f instanceof RuntimeException r) throw r;
        if (f instanceof Error err) throw err;
        if (f != null) throw new IllegalStateException(f);
    }

    /** {@link #forRange(int, int, RangeBody)} with a grain of 1. */
    public static void forRange(int n, RangeBody body) {
        forRange(n, 1, body);
    }

    private static synchronized Worker[] pool(int needed) {
        if (workers.length < needed) {
            Worker[] grown = java.util.Arrays.copyOf(workers, needed);
            for (int i = workers.length; i < needed; i++) {
                grown[i] = new Worker(i + 1);
            }
            workers = grown;
        }
        return workers;
    }

    private static final class Worker {
        final LinkedBlockingQueue<Runnable> queue = new LinkedBlockingQueue<>();

        Worker(int index) {
            Thread thread = new Thread(this::loop, "dsmoe-worker-" + index);
            thread.setDaemon(true);
            thread.start();
        }

        private void loop() {
            INSIDE.set(Boolean.TRUE);
            while (true) {
                try {
                    queue.take().run();
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }
}
