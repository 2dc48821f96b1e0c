package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GeneratorTest {

    @TempDir
    Path dir;

    @Test
    void greedyGenerationEqualsArgmaxOfFullRecomputationAndStreamsEveryToken() throws IOException {
        ModelConfig c = TinyModels.dsmoe();
        float[] p = TinyModels.params(ParamLayout.of(c), 21);
        int[] prompt = TinyModels.tokens(9, c.vocabSize(), 22);
        try (InferenceModel m = TinyModels.load(dir, c, p)) {
            Engine e = new Engine(m, ExpertSelection.parse("top-k:att=2,mlp=3"));
            List<Integer> streamed = new ArrayList<>();
            Generator.Result r = new Generator(e, Sampler.greedy(c.vocabSize()))
                    .generate(prompt, 12, -1, t -> streamed.add(t));
            assertEquals(Generator.StopReason.MAX_TOKENS, r.reason());
            assertEquals(12, r.tokens().length);
            assertArrayEquals(r.tokens(), streamed.stream().mapToInt(Integer::intValue).toArray());
            // recompute each step from scratch, without the cache
            Engine ref = new Engine(m, e.selection());
            int[] seq = prompt;
            for (int i = 0; i < 12; i++) {
                float[] all = ref.forwardAll(seq);
                int v = c.vocabSize(), best = 0;
                for (int k = 1; k < v; k++) if (all[(seq.length - 1) * v + k] > all[(seq.length - 1) * v + best]) best = k;
                assertEquals(best, r.tokens()[i], "token " + i);
                seq = Arrays.copyOf(seq, seq.length + 1);
                seq[seq.length - 1] = best;
            }
        }
    }

    @Test
    void stopsOnTheEndTokenTheListenerOrTheContext() throws IOException {
        ModelConfig c = TinyModels.smoe();
        float[] p = TinyModels.params(ParamLayout.of(c), 23);
        int[] prompt = TinyModels.tokens(5, c.vocabSize(), 24);
        try (InferenceModel m = TinyModels.load(dir, c, p)) {
            Engine e = new Engine(m);
            Generator g = new Generator(e, new Sampler(c.vocabSize(), 1.0, 0, 1.0, 5));
            int[] free = g.generate(prompt, 10, -1, null).tokens();
            g = new Generator(e, new Sampler(c.vocabSize(), 1.0, 0, 1.0, 5));
            Generator.Result ended = g.generate(prompt, 10, free[3], null);
            assertEquals(Generator.StopReason.END_TOKEN, ended.reason());
            int firstEnd = 0;
            while (free[firstEnd] != free[3]) firstEnd++;
            assertArrayEquals(Arrays.copyOf(free, firstEnd), ended.tokens());

            Generator.Result stopped = new Generator(e, Sampler.greedy(c.vocabSize())).generate(prompt, 10, -1, t -> false);
            assertEquals(Generator.StopReason.LISTENER, stopped.reason());
            assertEquals(1, stopped.tokens().length);

            Generator.Result full = new Generator(e, Sampler.greedy(c.vocabSize())).generate(prompt, 1000, -1, null);
            assertEquals(Generator.StopReason.CONTEXT_FULL, full.reason());
            assertEquals(TinyModels.CONTEXT - prompt.length + 1, full.tokens().length);
        }
    }

    @Test
    void decodeTimeLeavesOutTheListener() throws IOException {
        ModelConfig c = TinyModels.dense();
        try (InferenceModel m = TinyModels.load(dir, c, TinyModels.params(ParamLayout.of(c), 25))) {
            long sleepMs = 60;
            Generator.Result r = new Generator(new Engine(m), Sampler.greedy(c.vocabSize()))
                    .generate(TinyModels.tokens(4, c.vocabSize(), 26), 5, -1, t -> {
                        try {
                            Thread.sleep(sleepMs); // a slow terminal
                        } catch (InterruptedException e) {
                            throw new AssertionError(e);
                        }
                        return true;
                    });
            assertEquals(5, r.tokens().length);
            double slept = 5 * sleepMs / 1e3;
            assertTrue(r.decodeSeconds() < slept / 2, "decode " + r.decodeSeconds() + " s, listener " + slept + " s");
        }
    }
}
