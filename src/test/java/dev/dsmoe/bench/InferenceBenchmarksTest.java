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
}
