package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Continuous batching: greedy output is the single-sequence generator's whatever else runs;
 * requests preempted for KV memory still complete; a cancelled request frees its sequence and
 * blocks; a full queue and a shut-down scheduler refuse; shutdown drains.
 */
class SchedulerTest {

    /** Collects a request's tokens and its end. */
    static class Collect implements Scheduler.Listener {
        final List<Integer> tokens = new ArrayList<>();
        final CompletableFuture<Scheduler.Finish> done = new CompletableFuture<>();
        volatile Scheduler.Summary summary;

        @Override
        public synchronized void token(int token) {
            tokens.add(token);
        }

        @Override
        public void done(Scheduler.Finish finish, Scheduler.Summary s) {
            summary = s;
            done.complete(finish);
        }

        synchronized int[] array() {
            return tokens.stream().mapToInt(Integer::intValue).toArray();
        }
    }

    private static InferenceModel model(ModelConfig c) {
        ParamLayout layout = ParamLayout.of(c);
        return InferenceModel.fromParams(layout, TinyModels.params(layout, 7), MatVec.DType.F32);
    }

    @Test
    void greedyOutputIsTheGeneratorsAloneAndAmongOthers() throws Exception {
        ModelConfig c = TinyModels.dsmoe();
        try (InferenceModel m = model(c)) {
            int chunk = 12, batch = 16;
            String[] rules = {"dense", "top-k:2", "threshold:0.2", "threshold-top-k:0.4"};
            Engine e = Engine.batched(m, Scheduler.engineTokens(batch, chunk), TinyModels.CONTEXT, 64);
            try (Scheduler s = new Scheduler(e, batch, 64, chunk)) {
                List<Collect> got = new ArrayList<>();
                List<int[]> want = new ArrayList<>();
                for (int i = 0; i < batch; i++) {
                    int[] prompt = TinyModels.tokens(3 + (i * 5) % 26, c.vocabSize(), 40 + i);
                    ExpertSelection sel = ExpertSelection.parse(rules[i % rules.length], c);
                    int n = 4 + i % 7;
                    Generator alone = new Generator(new Engine(m, sel, TinyModels.CONTEXT, chunk), Sampler.greedy(c.vocabSize()));
                    want.add(alone.generate(prompt, n, -1, null).tokens());
                    Collect k = new Collect();
                    s.submit(prompt, n, Sampler.greedy(c.vocabSize()), sel, -1, k);
                    got.add(k);
                }
                for (int i = 0; i < batch; i++) {
                    assertEquals(Scheduler.Finish.LENGTH, got.get(i).done.get(30, TimeUnit.SECONDS));
                    assertArrayEquals(want.get(i), got.get(i).array(), "request " + i);
                }
                assertEquals(0, e.cache().blocksInUse(), "every block is given back");
                assertTrue(s.metrics().timeToFirstToken.count() == batch);
            }
        }
    }

    @Test
    void requestsPreemptedForCacheMemoryStillComplete() throws Exception {
        ModelConfig c = TinyModels.smoe();
        try (InferenceModel m = model(c)) {
            // 3 blocks of 16 positions: one full-context request fits, several do not.
            Engine e = Engine.batched(m, Scheduler.engineTokens(8, 16), TinyModels.CONTEXT, 3);
            try (Scheduler s = new Scheduler(e, 8, 64, 16)) {
                List<Collect> got = new ArrayList<>();
                for (int i = 0; i < 6; i++) {
                    Collect k = new Collect();
                    s.submit(TinyModels.tokens(10, c.vocabSize(), i), 30, Sampler.greedy(c.vocabSize()), ExpertSelection.topK(2), -1, k);
                    got.add(k);
                }
                for (Collect k : got) {
                    assertEquals(Scheduler.Finish.LENGTH, k.done.get(60, TimeUnit.SECONDS));
                    assertEquals(30, k.array().length);
                }
                assertTrue(s.metrics().preemptions.get() > 0, "the cache was too small for all at once");
                assertEquals(0, e.cache().blocksInUse());
            }
        }
    }

    @Test
    void cancellingFreesTheSequenceAndAFullQueueRefuses() throws Exception {
        ModelConfig c = TinyModels.dense();
        try (InferenceModel m = model(c)) {
            Engine e = Engine.batched(m, Scheduler.engineTokens(1, 8), TinyModels.CONTEXT, 16);
            Scheduler s = new Scheduler(e, 1, 1, 8);
            // a's first token holds the scheduler's thread until the test has queued b and been refused a third
            CountDownLatch first = new CountDownLatch(1), release = new CountDownLatch(1);
            Collect a = new Collect() {
                @Override
                public synchronized void token(int token) {
                    super.token(token);
                    first.countDown();
                    try {
                        release.await(30, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            };
            Scheduler.Request ra = s.submit(TinyModels.tokens(5, c.vocabSize(), 1), 40, Sampler.greedy(c.vocabSize()),
                    ExpertSelection.dense(), -1, a);
            assertTrue(first.await(10, TimeUnit.SECONDS));
            Collect b = new Collect();
            s.submit(TinyModels.tokens(5, c.vocabSize(), 2), 3, Sampler.greedy(c.vocabSize()), ExpertSelection.dense(), -1, b);
            Scheduler.Refused full = assertThrows(Scheduler.Refused.class, () -> s.submit(TinyModels.tokens(5, c.vocabSize(), 3), 3,
                    Sampler.greedy(c.vocabSize()), ExpertSelection.dense(), -1, new Collect()));
            assertTrue(full.getMessage().contains("queue is full"), full.getMessage());
            ra.cancel();
            release.countDown();
            assertEquals(Scheduler.Finish.CANCELLED, a.done.get(10, TimeUnit.SECONDS));
            assertEquals(Scheduler.Finish.LENGTH, b.done.get(10, TimeUnit.SECONDS));
            s.shutdown(1000);
            assertEquals(0, e.cache().blocksInUse());
            assertTrue(assertThrows(Scheduler.Refused.class, () -> s.submit(TinyModels.tokens(5, c.vocabSize(), 3), 3,
                    Sampler.greedy(c.vocabSize()), ExpertSelection.dense(), -1, new Collect())).shuttingDown);
            assertThrows(IllegalArgumentException.class, () -> s.submit(TinyModels.tokens(40, c.vocabSize(), 3), 9,
                    Sampler.greedy(c.vocabSize()), ExpertSelection.dense(), -1, new Collect()), "past the context");
        }
    }

    @Test
    void shutdownLetsRunningRequestsFinishWithinTheDrainTime() throws Exception {
        ModelConfig c = TinyModels.dense();
        try (InferenceModel m = model(c)) {
            Engine e = Engine.batched(m, Scheduler.engineTokens(4, 8), TinyModels.CONTEXT, 16);
            Scheduler s = new Scheduler(e, 4, 8, 8);
            Collect a = new Collect();
            s.submit(TinyModels.tokens(5, c.vocabSize(), 1), 20, Sampler.greedy(c.vocabSize()), ExpertSelection.dense(), -1, a);
            s.shutdown(30_000);
            assertEquals(Scheduler.Finish.LENGTH, a.done.getNow(null));
            assertEquals(20, a.array().length);
        }
    }
}
