package dev.dsmoe.infer;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Continuous batching over a batched {@link Engine}: requests join the running batch at the next
 * step and leave when done. Each step feeds every running request that is decoding one token and
 * the oldest request still reading its prompt one chunk of it (so a long prompt does not stall the
 * others' tokens), samples a token for each that got logits, and hands it to the request's
 * {@link Listener}. Waiting requests are admitted first come, first served, while there is room
 * in the batch and in the KV cache. When the cache runs out, the most recently admitted running
 * request is preempted: its blocks are freed and it is requeued at the front, to recompute its
 * cache from its prompt and the tokens it produced when it resumes (vLLM's recompute
 * preemption); an admitted request always completes. A request cancelled (client gone) leaves
 * at the next step with its blocks.
 *
 * <p>Prompt chunks have the engine's chunk size from the prompt's start, as the single-sequence
 * API makes them, so greedy output is the same as {@link Generator}'s alone and in any batch
 * (the engine's results do not depend on the other sequences of a step), unless the request was
 * preempted.
 *
 * <p>One thread (started by the constructor) runs the steps; {@link #submit} and
 * {@link Request#cancel} may be called from any thread. Listeners run on the scheduler's thread
 * and must return quickly (hand the token to another thread). Knows nothing of HTTP.
 */
public final class Scheduler implements AutoCloseable {

    /** Why a request ended. */
    public enum Finish {
        /** the end-of-text token (not emitted) */
        STOP,
        /** its token limit or the end of its context */
        LENGTH,
        /** cancelled by its client */
        CANCELLED,
        /** the server shut down before it completed */
        SHUTDOWN
    }

    /** Receives a request's tokens and its end, on the scheduler's thread. */
    public interface Listener {
        void token(int token);

        void done(Finish finish, Summary summary);
    }

    /**
     * What a request did: its prompt and completion tokens, seconds to its first token and in
     * all, and the experts its routers chose ({@link InferenceStats}: mean active experts and
     * parameters per token).
     */
    public record Summary(long id, int promptTokens, int completionTokens, double secondsToFirstToken, double seconds,
                          InferenceStats experts, int preemptions) {}

    /** Thrown by {@link #submit} when the queue is full or the scheduler stopped admitting. */
    public static final class Refused extends Exception {
        public final boolean shuttingDown;

        Refused(String message, boolean shuttingDown) {
            super(message);
            this.shuttingDown = shuttingDown;
        }
    }

    /** A submitted request; {@link #cancel()} ends it at the next step. */
    public final class Request {
        final long id;
        final int[] prompt;
        final int maxNewTokens, endToken;
        final Sampler sampler;
        final ExpertSelection selection;
        final Listener listener;
        final long submitted = System.nanoTime();
        volatile boolean cancelled;
        // Scheduler thread only.
        Sequence seq;
        int[] input; // prompt, then the tokens produced before a preemption
        int fed, produced, preemptions;
        int[] out;
        long firstToken, lastToken;
        final long[] attActive, mlpActive;
        long routed;

        Request(long id, int[] prompt, int maxNewTokens, Sampler sampler, ExpertSelection selection, int endToken, Listener listener) {
            this.id = id;
            this.prompt = prompt;
            this.input = prompt;
            this.maxNewTokens = maxNewTokens;
            this.sampler = sampler;
            this.selection = selection;
            this.endToken = endToken;
            this.listener = listener;
            this.out = new int[Math.min(maxNewTokens, 256)];
            attActive = new long[engine.config().numLayers()];
            mlpActive = new long[attActive.length];
        }

        public long id() {
            return id;
        }

        /** Ends the request at the next step (its listener gets {@link Finish#CANCELLED}). */
        public void cancel() {
            cancelled = true;
            wake();
        }

        boolean decoding() {
            return fed == input.length;
        }
    }

    private final Engine engine;
    private final int maxBatch, maxQueue, chunk, vocab;
    private final Object lock = new Object();
    private final ArrayDeque<Request> waiting = new ArrayDeque<>(); // guarded by lock
    private final List<Request> running = new ArrayList<>(); // scheduler thread; admission order
    private final float[] row;
    private final int[][] one;
    private final int[] entryOf;
    private final Thread thread;
    private volatile boolean admitting = true, stopped;
    private volatile long drainDeadline = Long.MAX_VALUE;
    private final AtomicLong ids = new AtomicLong();
    private final SchedulerMetrics metrics;

    /**
     * @param engine   a batched engine ({@link Engine#batched}) this scheduler alone drives; its
     *                 step size must hold {@code maxBatch} decoded tokens and one prompt chunk
     * @param maxBatch the most requests running at once
     * @param maxQueue the most requests waiting
     * @param chunk    prompt tokens per step
     */
    public Scheduler(Engine engine, int maxBatch, int maxQueue, int chunk) {
        this.engine = Objects.requireNonNull(engine, "engine");
        if (maxBatch < 1 || maxQueue < 0 || chunk < 1) throw new IllegalArgumentException("need max batch >= 1, queue >= 0, chunk >= 1");
        if (engine.maxTokens() < maxBatch + chunk) {
            throw new IllegalArgumentException("the engine's steps of " + engine.maxTokens() + " tokens cannot hold " + maxBatch
                    + " decoded tokens and a prompt chunk of " + chunk);
        }
        this.maxBatch = maxBatch;
        this.maxQueue = maxQueue;
        this.chunk = chunk;
        this.vocab = engine.config().vocabSize();
        this.row = new float[vocab];
        this.one = new int[maxBatch][1];
        this.entryOf = new int[maxBatch];
        this.metrics = new SchedulerMetrics(engine.config().numLayers());
        thread = Thread.ofPlatform().name("dsmoe-scheduler").daemon().start(this::loop);
    }

    /** The sizes a batched engine needs for this scheduler: tokens per step. */
    public static int engineTokens(int maxBatch, int chunk) {
        return maxBatch + chunk;
    }

    public Engine engine() {
        return engine;
    }

    public SchedulerMetrics metrics() {
        return metrics;
    }

    /**
     * Queues a request: {@code prompt} (its tokens are checked), then up to {@code maxNewTokens}
     * sampled tokens, ending early at {@code endToken} (-1: never). Prompt and tokens must fit the
     * engine's context.
     */
    public Request submit(int[] prompt, int maxNewTokens, Sampler sampler, ExpertSelection selection, int endToken,
                          Listener listener) throws Refused {
        if (prompt.length == 0) throw new IllegalArgumentException("empty prompt");
        if (maxNewTokens < 1) throw new IllegalArgumentException("max new tokens must be >= 1, got " + maxNewTokens);
        if ((long) prompt.length + maxNewTokens > engine.contextLength()) {
            throw new IllegalArgumentException("a prompt of " + prompt.length + " tokens and " + maxNewTokens
                    + " new tokens exceed the context of " + engine.contextLength());
        }
        for (int t : prompt) {
            if (t < 0 || t >= vocab) throw new IllegalArgumentException("token id " + t + " is outside the vocabulary [0, " + vocab + ")");
        }
        selection.check(engine.config());
        Request r = new Request(ids.incrementAndGet(), prompt.clone(), maxNewTokens, Objects.requireNonNull(sampler, "sampler"),
                selection, endToken, Objects.requireNonNull(listener, "listener"));
        synchronized (lock) {
            if (!admitting) throw new Refused("the server is shutting down", true);
            if (waiting.size() >= maxQueue) throw new Refused("the queue is full (" + maxQueue + " requests waiting)", false);
            waiting.add(r);
            metrics.waiting = waiting.size();
            lock.notifyAll();
        }
        return r;
    }

    /** Requests running now. */
    public int running() {
        return metrics.running;
    }

    /** Requests waiting now. */
    public int waiting() {
        return metrics.waiting;
    }

    /**
     * Stops admitting new requests, lets the queued and running ones finish for up to
     * {@code drainMillis}, then ends the rest ({@link Finish#SHUTDOWN}) and stops the thread.
     */
    public void shutdown(long drainMillis) throws InterruptedException {
        synchronized (lock) {
            admitting = false;
            drainDeadline = System.nanoTime() + Math.max(0, drainMillis) * 1_000_000L;
            lock.notifyAll();
        }
        thread.join();
    }

    @Override
    public void close() throws InterruptedException {
        shutdown(0);
    }

    private void wake() {
        synchronized (lock) {
            lock.notifyAll();
        }
    }

    // ------------------------------------------------------------------ the loop

    private void loop() {
        try {
            while (true) {
                boolean draining = !admitting;
                if (draining && System.nanoTime() > drainDeadline) {
                    endAll(Finish.SHUTDOWN);
                    return;
                }
                dropCancelled();
                admit();
                if (running.isEmpty()) {
                    synchronized (lock) {
                        if (!admitting && waiting.isEmpty()) return;
                        if (waiting.isEmpty()) {
                            lock.wait(draining ? 50 : 1000);
                            continue;
                        }
                    }
                    continue;
                }
                step();
            }
        } catch (InterruptedException e) {
            endAll(Finish.SHUTDOWN);
        } catch (RuntimeException | Error e) {
            // A failed step must not leave clients waiting forever.
            metrics.failures.incrementAndGet();
            endAll(Finish.SHUTDOWN);
            throw e;
        } finally {
            stopped = true;
        }
    }

    private void dropCancelled() {
        for (int i = running.size() - 1; i >= 0; i--) {
            Request r = running.get(i);
            if (r.cancelled) finish(i, Finish.CANCELLED);
        }
        synchronized (lock) {
            waiting.removeIf(r -> {
                if (!r.cancelled) return false;
                r.listener.done(Finish.CANCELLED, summary(r));
                return true;
            });
            metrics.waiting = waiting.size();
        }
    }

    /** Admits waiting requests in order while the batch has room and the cache holds their prompt. */
    private void admit() {
        synchronized (lock) {
            while (!waiting.isEmpty() && running.size() < maxBatch) {
                Request r = waiting.peek();
                int need = engine.cache().blocksFor(r.input.length + 1L);
                if (need > engine.cache().blocksAvailable() && !running.isEmpty()) break; // wait for blocks to free
                waiting.poll();
                r.seq = engine.open(r.selection, Math.min(engine.contextLength(), r.prompt.length + r.maxNewTokens));
                r.fed = 0;
                running.add(r);
            }
            metrics.waiting = waiting.size();
            metrics.running = running.size();
        }
    }

    private void step() {
        // Plan: every decoding request one token; the oldest prefilling one a chunk. Preempt from
        // the newest while the cache cannot hold the step.
        while (true) {
            engine.clearStep();
            Request prefilling = null;
            for (int i = 0; i < running.size(); i++) {
                Request r = running.get(i);
                if (r.decoding()) {
                    one[i][0] = r.out[r.produced - 1];
                    entryOf[i] = engine.add(r.seq, one[i], 0, 1, Engine.Logits.LAST);
                } else if (prefilling == null) {
                    prefilling = r;
                    int n = Math.min(chunk, r.input.length - r.fed);
                    entryOf[i] = engine.add(r.seq, r.input, r.fed, n, r.fed + n == r.input.length ? Engine.Logits.LAST
                            : Engine.Logits.NONE);
                } else {
                    entryOf[i] = -1;
                }
            }
            if (engine.stepBlocksNeeded() <= engine.cache().blocksAvailable()) break;
            if (running.size() == 1) {
                // One request alone cannot get its blocks: the cache is smaller than its context.
                finish(0, Finish.LENGTH);
                return;
            }
            preempt(running.size() - 1);
        }
        long t0 = System.nanoTime();
        engine.run();
        long now = System.nanoTime();
        metrics.step(engine.stepEntries(), engine.stepTokens(), now - t0, engine.cache().blocksInUse(), engine.cache().maxBlocks());
        float[] logits = engine.logits();
        for (int i = running.size() - 1; i >= 0; i--) {
            Request r = running.get(i);
            int e = entryOf[i];
            if (e < 0) continue;
            if (!r.decoding()) {
                int n = Math.min(chunk, r.input.length - r.fed);
                r.fed += n;
                metrics.promptTokens.addAndGet(n);
                if (!r.decoding()) continue;
            }
            System.arraycopy(logits, engine.logitsRow(e) * vocab, row, 0, vocab);
            int token = r.sampler.sample(row);
            if (token == r.endToken) {
                finish(i, Finish.STOP);
                continue;
            }
            if (r.produced == r.out.length) r.out = Arrays.copyOf(r.out, Math.min(r.maxNewTokens, 2 * r.out.length));
            r.out[r.produced++] = token;
            if (r.firstToken == 0) {
                r.firstToken = now;
                metrics.timeToFirstToken.add((now - r.submitted) / 1e9);
            } else {
                metrics.interTokenLatency.add((now - r.lastToken) / 1e9);
            }
            r.lastToken = now;
            metrics.completionTokens.incrementAndGet();
            r.listener.token(token);
            if (r.produced >= r.maxNewTokens || r.seq.length() >= r.seq.capacity()) finish(i, Finish.LENGTH);
        }
    }

    /** Frees request i's blocks and requeues it at the front, to resume from its prompt and its tokens so far. */
    private void preempt(int i) {
        Request r = running.remove(i);
        keepStats(r);
        engine.close(r.seq);
        r.seq = null;
        int[] in = Arrays.copyOf(r.prompt, r.prompt.length + r.produced);
        System.arraycopy(r.out, 0, in, r.prompt.length, r.produced);
        // The last produced token has not been fed yet: it is the input's last token now, and the
        // logits of its position give the next token.
        r.input = in;
        r.fed = 0;
        r.preemptions++;
        metrics.preemptions.incrementAndGet();
        synchronized (lock) {
            waiting.addFirst(r);
            metrics.waiting = waiting.size();
            metrics.running = running.size();
        }
    }

    private void finish(int i, Finish how) {
        Request r = running.remove(i);
        keepStats(r);
        engine.close(r.seq);
        r.seq = null;
        metrics.ended(how);
        metrics.running = running.size();
        r.listener.done(how, summary(r));
    }

    private void keepStats(Request r) {
        if (r.seq == null) return;
        for (int l = 0; l < r.attActive.length; l++) {
            r.attActive[l] += r.seq.attActive[l];
            r.mlpActive[l] += r.seq.mlpActive[l];
        }
        r.routed += r.seq.routedTokens;
        metrics.addExperts(r.seq.attActive, r.seq.mlpActive, r.seq.routedTokens);
    }

    private Summary summary(Request r) {
        InferenceStats experts = InferenceStats.of(engine.config(), engine.model().counts(), r.selection.toString(), r.attActive,
                r.mlpActive, r.routed, 0, 0, 0, 0);
        double ttft = r.firstToken == 0 ? Double.NaN : (r.firstToken - r.submitted) / 1e9;
        return new Summary(r.id, r.prompt.length, r.produced, ttft, (System.nanoTime() - r.submitted) / 1e9, experts, r.preemptions);
    }

    private void endAll(Finish how) {
        for (int i = running.size() - 1; i >= 0; i--) finish(i, how);
        synchronized (lock) {
            admitting = false;
            for (Request r : waiting) r.listener.done(how, summary(r));
            waiting.clear();
            metrics.waiting = 0;
        }
    }

    /** Whether the loop has ended. */
    public boolean stopped() {
        return stopped;
    }
}
