package dev.dsmoe.bench;

import static org.junit.jupiter.api.Assertions.*;

import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.kernels.MatVec;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The timing runs' tokens: random ids, or a given text read teacher-forced. */
class InferenceBenchmarksTest {

    /** With a text, the decode steps read its tokens: the experts they activate are those of the same tokens run by hand. */
    @Test
    void decodeRunsReadTheGivenTextTeacherForced() {
        int prompt = 12, decode = 10;
        try (InferenceModel m = InferenceBenchmarks.randomModel("dsmoe-small", MatVec.DType.F32)) {
            int vocab = m.config().vocabSize();
            int[] text = new SplittableRandom(7).ints(40, 0, 50).toArray(); // a few ids only: unlike random ids over the vocabulary
            String strategy = "threshold:0.48";
            InferenceBenchmarks.Row row = new InferenceBenchmarks(prompt, decode, 0, 1, s -> { }).text(text)
                    .run("dsmoe-small", m, List.of(strategy)).getFirst();

            Engine e = new Engine(m, ExpertSelection.parse(strategy, m.config()), prompt + decode, Engine.DEFAULT_CHUNK);
            e.prefill(Arrays.copyOf(text, prompt));
            e.resetStats();
            for (int t = prompt; t < prompt + decode; t++) e.decode(text[t]);
            assertEquals(e.stats().meanActiveMlp(), row.meanActiveMlp(), 1e-12);
            assertEquals(e.stats().meanActiveAttention(), row.meanActiveAttention(), 1e-12);

            assertThrows(IllegalArgumentException.class, () -> new InferenceBenchmarks(prompt, decode, 0, 1, s -> { })
                    .text(Arrays.copyOf(text, prompt + decode - 1)), "a text shorter than a run");
            int[] outside = text.clone();
            outside[3] = vocab;
            IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> new InferenceBenchmarks(prompt, decode, 0, 1,
                    s -> { }).text(outside).run("dsmoe-small", m, List.of(strategy)));
            assertTrue(ex.getMessage().contains("outside the model's vocabulary"), ex.getMessage());
        }
    }

    /**
     * Several models timed together, round by round: a row per (model, selection) in the order
     * given, each with the experts its own runs activated (as timing it alone gives), "decode
     * vs first" against its own model's first row, and each round's runs in turn (the progress
     * lines alternate between the models).
     */
    @Test
    void modelsTimedTogetherRoundByRound() {
        int prompt = 6, decode = 5;
        try (InferenceModel dense = InferenceBenchmarks.randomModel("dense-small", MatVec.DType.F32);
             InferenceModel ds = InferenceBenchmarks.randomModel("dsmoe-small", MatVec.DType.BF16)) {
            List<String> lines = new java.util.ArrayList<>();
            List<InferenceBenchmarks.Row> rows = new InferenceBenchmarks(prompt, decode, 0, 2, lines::add).runTogether(threeRows(dense, ds));
            assertEquals(List.of("dense-small", "dsmoe-small", "dsmoe-small"), rows.stream().map(InferenceBenchmarks.Row::model).toList());
            assertEquals(List.of("f32", "bf16", "bf16"), rows.stream().map(InferenceBenchmarks.Row::dtype).toList());
            assertEquals(1.0, rows.get(0).decodeSpeedupToFirst(), 0);
            assertEquals(1.0, rows.get(1).decodeSpeedupToFirst(), 0, "each model's first row is its own reference");
            assertEquals(rows.get(2).decodeTokensPerSecond() / rows.get(1).decodeTokensPerSecond(), rows.get(2).decodeSpeedupToFirst(), 1e-12);
            for (InferenceBenchmarks.Row r : rows) {
                assertTrue(r.prefillTokensPerSecond() > 0 && r.decodeTokensPerSecond() > 0, r.toString());
                InferenceBenchmarks.Row alone = new InferenceBenchmarks(prompt, decode, 0, 1, x -> { })
                        .run(r.model(), r.model().equals("dense-small") ? dense : ds, List.of(r.selection())).getFirst();
                assertEquals(alone.meanActiveMlp(), r.meanActiveMlp(), 1e-12, r.toString());
                assertEquals(alone.meanActiveAttention(), r.meanActiveAttention(), 1e-12, r.toString());
                assertEquals(alone.weightBytesPerToken(), r.weightBytesPerToken(), 1e-6, r.toString());
            }
            assertTrue(rows.get(2).meanActiveMlp() <= 2 + 1e-12 && rows.get(1).meanActiveMlp() > 2, rows.toString());
            // the timed rounds: dense, dsmoe dense, dsmoe top-2, then again
            List<String> timed = lines.stream().filter(l -> l.endsWith("/2")).toList();
            assertEquals(6, timed.size(), lines.toString());
            assertTrue(timed.get(0).startsWith("dense-small") && timed.get(1).startsWith("dsmoe-small")
                    && timed.get(3).startsWith("dense-small") && timed.get(0).endsWith("1/2") && timed.get(3).endsWith("2/2"), timed.toString());
        }
    }

    /**
     * Batched decode of several models timed together: rows model by model, then by B, then by
     * selection; each with the experts its own runs activate alone; "vs first" against its own
     * model's first selection at the same B; the timed runs alternate between the models.
     */
    @Test
    void batchedModelsTimedTogether() {
        int prompt = 4, decode = 3;
        try (InferenceModel dense = InferenceBenchmarks.randomModel("dense-small", MatVec.DType.F32);
             InferenceModel ds = InferenceBenchmarks.randomModel("dsmoe-small", MatVec.DType.F32)) {
            List<String> lines = new java.util.ArrayList<>();
            List<InferenceBenchmarks.BatchRow> rows = new InferenceBenchmarks(prompt, decode, 0, 1, lines::add).runBatchedTogether(threeRows(dense, ds), List.of(1, 3));
            assertEquals(List.of("dense-small 1", "dense-small 3", "dsmoe-small 1", "dsmoe-small 1", "dsmoe-small 3", "dsmoe-small 3"),
                    rows.stream().map(r -> r.model() + " " + r.batch()).toList());
            assertEquals(1.0, rows.get(0).speedupToFirst(), 0);
            assertEquals(1.0, rows.get(2).speedupToFirst(), 0);
            assertEquals(rows.get(3).aggregateTokensPerSecond() / rows.get(2).aggregateTokensPerSecond(), rows.get(3).speedupToFirst(), 1e-12);
            List<InferenceBenchmarks.BatchRow> alone = new InferenceBenchmarks(prompt, decode, 0, 1, x -> { })
                    .runBatched("dsmoe-small", ds, List.of("dense", "top-k:2"), List.of(1, 3));
            for (int i = 0; i < alone.size(); i++) {
                InferenceBenchmarks.BatchRow a = alone.get(i), t = rows.get(2 + i);
                assertEquals(a.selection(), t.selection());
                assertEquals(a.batch(), t.batch());
                assertEquals(a.meanActiveMlp(), t.meanActiveMlp(), 1e-12, t.toString());
                assertEquals(t.aggregateTokensPerSecond() / t.batch(), t.perSequenceTokensPerSecond(), 1e-9);
            }
            List<String> timed = lines.stream().filter(l -> l.endsWith(": 1/1")).toList();
            assertEquals(6, timed.size(), lines.toString());
            assertTrue(timed.get(0).startsWith("dense-small") && timed.get(0).contains("batch 1") && timed.get(1).startsWith("dsmoe-small")
                    && timed.get(3).startsWith("dense-small") && timed.get(3).contains("batch 3"), timed.toString());
        }
    }

    /** Dense-small by default, then DS-MoE-small under all experts and under top-2. */
    private static List<InferenceBenchmarks.Subject> threeRows(InferenceModel dense, InferenceModel ds) {
        return List.of(new InferenceBenchmarks.Subject("dense-small", dense, "default"),
                new InferenceBenchmarks.Subject("dsmoe-small", ds, "dense"),
                new InferenceBenchmarks.Subject("dsmoe-small", ds, "top-k:2"));
    }
}
