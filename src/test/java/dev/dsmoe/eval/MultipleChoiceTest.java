package dev.dsmoe.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MultipleChoiceTest {

    @TempDir
    Path dir;

    @Test
    void readsJsonlAndNamesTheBadLine() throws IOException {
        Path f = Files.writeString(dir.resolve("mc.jsonl"), """
                {"context": "int x = ", "choices": ["1;", "\\"a\\";"], "gold": 0}

                {"context": "", "choices": ["a", "b", "c"], "gold": 2}
                """);
        List<MultipleChoice.Item> items = MultipleChoice.readJsonl(f);
        assertEquals(2, items.size());
        assertEquals("\"a\";", items.get(0).choices().get(1));
        assertEquals(2, items.get(1).gold());

        String[][] bad = {
                {"{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 2}", "gold 2 is not a choice index"},
                {"{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0}", "needs at least 2 choices"},
                {"{\"context\": 3, \"choices\": [\"x\", \"y\"], \"gold\": 0}", "\"context\" missing or not a string"},
                {"{\"context\": \"a\", \"choices\": \"x\", \"gold\": 0}", "\"choices\" missing"},
                {"{\"context\": \"a\", \"choices\": [\"x\", \"y\"]}", "\"gold\" missing"},
                {"{\"context\": \"a\", \"choices\": [\"x\", \"\"], \"gold\": 0}", "choice 1 is empty"},
                {"[1, 2]", "not a JSON object"},
                {"{\"context\": ", "not valid JSON"},
        };
        for (String[] b : bad) {
            Path g = Files.writeString(dir.resolve("bad.jsonl"), "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 1}\n\n"
                    + b[0] + "\n");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MultipleChoice.readJsonl(g), b[0]);
            assertTrue(e.getMessage().contains("bad.jsonl line 3: " + b[1]), e.getMessage());
        }
        Path empty = Files.writeString(dir.resolve("empty.jsonl"), "\n");
        assertThrows(IllegalArgumentException.class, () -> MultipleChoice.readJsonl(empty));
        Path latin1 = Files.write(dir.resolve("latin1.jsonl"), new byte[] {'{', (byte) 0xe9, '}', '\n'});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MultipleChoice.readJsonl(latin1));
        assertTrue(e.getMessage().contains("line 1: not UTF-8"), e.getMessage());
    }

    @Test
    void scoresAreTheSumOfTheChoiceTokensLogProbabilities() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        try (InferenceModel m = EvalFixtures.model(c, 21)) {
            Engine e = new Engine(m, ExpertSelection.dense());
            int[] ctx = {3, 7, 9, 1}, choice = {5, 6, 2};
            double[] lp = new Engine(m, ExpertSelection.dense()).score(new int[] {3, 7, 9, 1, 5, 6, 2});
            double expected = lp[3] + lp[4] + lp[5]; // log p(5|3 7 9 1) + log p(6|..5) + log p(2|..6)
            assertEquals(expected, MultipleChoice.logLikelihood(e, ctx, choice), 1e-12);

            // a context longer than the model's loses its oldest tokens
            int[] longCtx = EvalFixtures.randomTokens(c.maxPositions() + 10, c.vocabSize(), 1);
            int[] kept = java.util.Arrays.copyOfRange(longCtx, longCtx.length - (c.maxPositions() - 3), longCtx.length);
            assertEquals(MultipleChoice.logLikelihood(e, kept, choice), MultipleChoice.logLikelihood(e, longCtx, choice), 1e-12);
            assertThrows(IllegalArgumentException.class,
                    () -> MultipleChoice.logLikelihood(e, ctx, new int[c.maxPositions()]));
        }
    }

    @Test
    void accuracyPicksTheHighestLikelihoodAndAccNormDividesByBytes() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        try (InferenceModel m = EvalFixtures.model(c, 22)) {
            Engine e = new Engine(m, ExpertSelection.dense());
            List<MultipleChoice.TokenItem> right = new ArrayList<>(), wrong = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                int[] ctx = EvalFixtures.randomTokens(5, c.vocabSize(), 100 + i);
                int[][] choices = new int[4][];
                for (int k = 0; k < 4; k++) choices[k] = EvalFixtures.randomTokens(1 + k, c.vocabSize(), 200 + 10 * i + k);
                double[] ll = new double[4];
                for (int k = 0; k < 4; k++) ll[k] = MultipleChoice.logLikelihood(e, ctx, choices[k]);
                int best = MultipleChoice.argmax(ll);
                int[] bytes = {1, 1, 1, 1};
                right.add(new MultipleChoice.TokenItem(ctx, choices, best, bytes));
                wrong.add(new MultipleChoice.TokenItem(ctx, choices, (best + 1) % 4, bytes));
            }
            MultipleChoice.Result r = MultipleChoice.evaluate("t", e, right, MultipleChoice.Progress.NONE);
            assertEquals(1.0, r.acc(), 0);
            assertEquals(1.0, r.accNorm(), 0); // equal byte lengths: the same decision
            assertEquals(0.25, r.chance(), 1e-12);
            assertEquals(6, r.items());
            assertEquals(0.0, MultipleChoice.evaluate("t", e, wrong, MultipleChoice.Progress.NONE).acc(), 0);

            // a constructed case: the gold has the higher likelihood per byte but not in total
            int[] ctx = {1, 2, 3};
            int[][] two = {EvalFixtures.randomTokens(1, c.vocabSize(), 7), EvalFixtures.randomTokens(6, c.vocabSize(), 8)};
            double l0 = MultipleChoice.logLikelihood(e, ctx, two[0]), l1 = MultipleChoice.logLikelihood(e, ctx, two[1]);
            assertTrue(l0 > l1, "one token is likelier than six");
            // choice 1 is long in bytes: its per-byte log-likelihood beats choice 0's when it has many bytes
            int bytes1 = (int) Math.ceil(l1 / l0 * 2) + 1;
            MultipleChoice.Scored s = MultipleChoice.score(e, new MultipleChoice.TokenItem(ctx, two, 1, new int[] {2, bytes1}));
            assertEquals(0, s.prediction());
            assertEquals(1, s.predictionNorm());
            assertEquals(l0, s.logLikelihood()[0], 1e-12);
        }
    }
}
