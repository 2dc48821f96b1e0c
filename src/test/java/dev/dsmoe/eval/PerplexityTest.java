package dev.dsmoe.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.data.TokenShard;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PerplexityTest {

    @TempDir
    Path dir;

    @Test
    void perplexityIsExpOfTheMeanNllFromEngineScore() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        int[] tokens = EvalFixtures.randomTokens(100, c.vocabSize(), 1);
        int seq = 16;
        try (InferenceModel m = EvalFixtures.model(c, 2); TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            Perplexity.Result r = Perplexity.evaluate(new Engine(m, ExpertSelection.dense()), shard, seq, -1, Perplexity.Progress.NONE);
            Engine direct = new Engine(m, ExpertSelection.dense());
            double sum = 0;
            long n = 0;
            for (int s = 0; s < tokens.length; s += seq) {
                double[] lp = direct.score(Arrays.copyOfRange(tokens, s, Math.min(tokens.length, s + seq)));
                for (double v : lp) sum -= v;
                n += lp.length;
            }
            assertEquals(n, r.tokensScored());
            assertEquals(sum / n, r.loss(), 1e-12);
            assertEquals(Math.exp(sum / n), r.perplexity(), 1e-9 * r.perplexity());
            assertTrue(r.loss() > 0 && Double.isFinite(r.loss()));
            assertEquals("dense", r.selection());
            assertEquals(c.nAtt(), r.stats().meanActiveAttention(), 0);
            assertEquals(c.nFfd(), r.stats().meanActiveMlp(), 0);
            assertEquals(100.0, r.stats().activeHiddenPercent(), 1e-9);
        }
    }

    @Test
    void windowsScoreEachTokenOnceAndTheFirstOfEachWindowNever() throws IOException {
        // 100 tokens in windows of 16: 6 full windows (15 scored each) and one of 4 (3 scored).
        assertEquals(7, Perplexity.windows(100, 16));
        assertEquals(93, Perplexity.scoredTokens(100, 16));
        // a last window of a single token scores nothing
        assertEquals(6, Perplexity.windows(97, 16));
        assertEquals(90, Perplexity.scoredTokens(97, 16));
        assertEquals(0, Perplexity.scoredTokens(1, 16));
        assertThrows(IllegalArgumentException.class, () -> Perplexity.windows(10, 1));

        ModelConfig c = EvalFixtures.dsmoe();
        int[] tokens = EvalFixtures.randomTokens(100, c.vocabSize(), 3);
        try (InferenceModel m = EvalFixtures.model(c, 4); TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            Engine e = new Engine(m, ExpertSelection.dense());
            long[] last = new long[2];
            Perplexity.Result all = Perplexity.evaluate(e, shard, 16, -1, (done, total, s) -> {
                last[0] = done;
                last[1] = total;
            });
            assertEquals(93, all.tokensScored());
            assertEquals(7, all.windows());
            assertEquals(100, all.tokens());
            assertEquals(100, last[0]);
            assertEquals(100, last[1]);
            assertEquals(100, all.stats().prefillTokens(), "every token goes through the model once");

            // --max-tokens 40: windows of 16, 16, 8 -> 15 + 15 + 7 scored
            Perplexity.Result some = Perplexity.evaluate(e, shard, 16, 40, Perplexity.Progress.NONE);
            assertEquals(40, some.tokens());
            assertEquals(37, some.tokensScored());
            assertEquals(3, some.windows());
            // the first 40 tokens of the full run are the same windows: their sum is a prefix of the full sum
            assertTrue(some.sumNll() < all.sumNll());
        }
    }

    @Test
    void topKWithAllExpertsGivesTheDenseLoss() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        int[] tokens = EvalFixtures.randomTokens(90, c.vocabSize(), 5);
        try (InferenceModel m = EvalFixtures.model(c, 6); TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            Engine e = new Engine(m, ExpertSelection.dense());
            Perplexity.Result dense = Perplexity.evaluate(e, shard, 20, -1, Perplexity.Progress.NONE);
            e.setSelection(ExpertSelection.parse("top-k:att=" + c.nAtt() + ",mlp=" + c.nFfd()));
            Perplexity.Result topK = Perplexity.evaluate(e, shard, 20, -1, Perplexity.Progress.NONE);
            assertEquals(dense.tokensScored(), topK.tokensScored());
            assertEquals(dense.loss(), topK.loss(), 1e-6 * dense.loss()); // same experts, same gates; summation order may differ
            assertEquals(c.nFfd(), topK.stats().meanActiveMlp(), 0);
            // a sparse selection activates fewer experts and changes the loss
            e.setSelection(ExpertSelection.topK(1));
            Perplexity.Result sparse = Perplexity.evaluate(e, shard, 20, -1, Perplexity.Progress.NONE);
            assertEquals(1.0, sparse.stats().meanActiveMlp(), 0);
            assertTrue(sparse.stats().activeParamsPerToken() < dense.stats().activeParamsPerToken());
            assertTrue(Math.abs(sparse.loss() - dense.loss()) > 1e-6);
        }
    }

    @Test
    void anEmptyOrTooShortShardIsAClearError() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        try (InferenceModel m = EvalFixtures.model(c, 7); TokenShard one = EvalFixtures.shard(dir.resolve("one.bin"), new int[] {3})) {
            Engine e = new Engine(m, ExpertSelection.dense());
            IllegalArgumentException ex = assertThrows(IllegalArgumentException.class,
                    () -> Perplexity.evaluate(e, one, 16, -1, Perplexity.Progress.NONE));
            assertTrue(ex.getMessage().contains("nothing to score"), ex.getMessage());
            assertThrows(IllegalArgumentException.class, () -> Perplexity.evaluate(e, one, c.maxPositions() + 1, -1,
                    Perplexity.Progress.NONE));
        }
    }
}
