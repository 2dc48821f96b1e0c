package dev.dsmoe.kernels;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

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
     * chunks of at least {@code grain} indices each; returns when all chunks are done. The caller
     * runs chunk 0; worker i runs chunk i. One region runs at a time: a second thread that opens
     * one waits for the first to finish.
     */
    public static void forRange(int n, int grain, RangeBody body) {
        if (n <= 0) return;
        int t = threads;
        int chunks = Math.min(t, Math.max(1, n / Math.max(1, grain)));
        if (chunks <= 1 || INSIDE.get()) {
            body.run(0, n);
            return;
        }
        REGION.lock();
        try {
            runRegion(n, chunks, body);
        } finally {
            REGION.unlock();
        }
    }

    /*
     * The region's state lives in static fields, published to each worker by the volatile write of
     * its ticket, so a region allocates nothing (no latch, queue node or task object): the
     * training step's parallel kernels run thousands of regions per second.
     */
    private static final ReentrantLock REGION = new ReentrantLock();
    private static RangeBody regionBody;
    private static int regionN, regionChunks;
    private static volatile Thread regionCaller;
    private static final AtomicInteger PENDING = new AtomicInteger();
    private static final AtomicReference<Throwable> FAILURE = new AtomicReference<>();
    /** Spins before parking: a region is often only tens of microseconds long. */
    private static final int SPINS = 1 << 12;

    private static void runRegion(int n, int chunks, RangeBody body) {
        Worker[] pool = pool(chunks - 1);
        regionBody = body;
        regionN = n;
        regionChunks = chunks;
        regionCaller = Thread.currentThread();
        FAILURE.set(null);
        PENDING.set(chunks - 1);
        for (int c = 1; c < chunks; c++) pool[c - 1].assign();
        INSIDE.set(Boolean.TRUE);
        try {
            body.run(0, (int) ((long) n / chunks));
        } catch (Throwable e) {
            FAILURE.compareAndSet(null, e);
        } finally {
            INSIDE.set(Boolean.FALSE);
        }
        for (int spin = 0; PENDING.get() != 0; spin++) {
            if (spin < SPINS) Thread.onSpinWait();
            else LockSupport.park(Parallel.class);
        }
        regionBody = null; // do not keep the body's captured arrays alive
        Throwable f = FAILURE.getAndSet(null);
        if (f instanceof RuntimeException r) throw r;
        if (f instanceof Error err) throw err;
        if (f != null) throw new IllegalStateException(f);
    }

    /**
     * Runs {@code body} over {@code [0, n)} in chunks of {@code chunk} indices (the last one
     * shorter) that the threads take one after the other as they finish the one before, so a
     * thread that started late or streams slower does fewer: for the memory-bound mat-vecs,
     * where the two halves of a static split finished apart (decode spent about 6 % of its time
     * with the caller waiting for the worker, session 8's profile). Each chunk is one call of the body; which
     * thread runs it varies from call to call, so the body's result must not depend on the thread.
     */
    public static void forChunks(int n, int chunk, RangeBody body) {
        if (n <= 0) return;
        if (chunk < 1) throw new IllegalArgumentException("chunk must be >= 1, got " + chunk);
        int count = (n + chunk - 1) / chunk, t = Math.min(threads, count);
        if (t <= 1 || INSIDE.get()) {
            for (int c = 0; c < count; c++) body.run(c * chunk, Math.min(n, (c + 1) * chunk));
            return;
        }
        REGION.lock();
        try {
            chunkBody = body;
            chunkN = n;
            chunkSize = chunk;
            NEXT_CHUNK.set(0);
            runRegion(t, t, CHUNKS);
        } finally {
            chunkBody = null;
            REGION.unlock();
        }
    }

    // forChunks' region: every thread takes chunks until none is left (state under REGION, as the region's)
    private static RangeBody chunkBody;
    private static int chunkN, chunkSize;
    private static final AtomicInteger NEXT_CHUNK = new AtomicInteger();
    private static final RangeBody CHUNKS = (i0, i1) -> {
        RangeBody body = chunkBody;
        int n = chunkN, size = chunkSize;
        for (int c = NEXT_CHUNK.getAndIncrement(); (long) c * size < n; c = NEXT_CHUNK.getAndIncrement()) {
            body.run(c * size, (int) Math.min(n, (long) (c + 1) * size));
        }
    };

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
        /** Worker i runs chunk i of a region. */
        private final int index;
        private final Thread thread;
        /** Regions assigned so far; the worker runs one chunk for each increment. */
        private volatile long ticket;

        Worker(int index) {
            this.index = index;
            thread = new Thread(this::loop, "dsmoe-worker-" + index);
            thread.setDaemon(true);
            thread.start();
        }

        void assign() {
            ticket = ticket + 1; // only the region's caller writes, under REGION
            LockSupport.unpark(thread);
        }

        private void loop() {
            INSIDE.set(Boolean.TRUE);
            long done = 0;
            while (true) {
                for (int spin = 0; ticket == done; spin++) {
                    if (spin < SPINS) Thread.onSpinWait();
                    else LockSupport.park(this);
                }
                done++;
                int n = regionN, chunks = regionChunks;
                try {
                    regionBody.run((int) ((long) n * index / chunks), (int) ((long) n * (index + 1) / chunks));
                } catch (Throwable e) {
                    FAILURE.compareAndSet(null, e);
                }
                if (PENDING.decrementAndGet() == 0) LockSupport.unpark(regionCaller);
            }
        }
    }
}
