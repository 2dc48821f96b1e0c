package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The batched engine: a sequence's logits and expert choices do not depend on what else is in
 * its steps (bit for bit, so greedy decoding is identical alone and in a batch), for every
 * selection strategy, with sequences of different lengths, strategies and start times sharing
 * steps (some prefilling in chunks while others decode); and the paged KV cache grows with the
 * positions in use and is given back when a sequence ends.
 */
class BatchedEngineTest {

    private static final String[] STRATEGIES = {"dense", "top-k:2", "top-k:att=1,mlp=3", "threshold:0.2",
            "threshold:att=0.3,mlp=0.6", "threshold-top-k:0.4", "threshold-top-k:att=0.5,mlp=0.9"};
    /** Prompt chunk: more than Matmul.MATVEC_MAX_ROWS, so prompts exercise the GEMM path and the mat-vec for their last piece. */
    private static final int CHUNK = 12;
    private static final int DECODE = 9;

    /** What one sequence went through: the logits of each step that gave some, and its mean active experts. */
    private record Trace(List<float[]> logits, int[] tokens, double att, double mlp) {}

    /** One request: a prompt, a selection, and the step at which it joins the batch. */
    private record Request(int[] prompt, ExpertSelection selection, int start) {}

    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.dsmoe.infer.TinyModels#all")
    void aSequenceGetsTheSameLogitsAloneAndInABatch(String name, ModelConfig c) {
        ParamLayout layout = ParamLayout.of(c);
        for (MatVec.DType dtype : new MatVec.DType[] {MatVec.DType.F32, MatVec.DType.Q8_0}) {
            try (InferenceModel m = InferenceModel.fromParams(layout, TinyModels.params(layout, 3), dtype)) {
                List<Request> requests = new ArrayList<>();
                int[] lengths = {5, 23, 1, 30, 12, 8, 17};
                // Twice each strategy, so more than Matmul.MATVEC_MAX_ROWS decoded tokens share the mat-vec rows of a step.
                for (int i = 0; i < 2 * STRATEGIES.length; i++) {
                    requests.add(new Request(TinyModels.tokens(lengths[i % lengths.length], c.vocabSize(), 10 + i),
                            ExpertSelection.parse(STRATEGIES[i % STRATEGIES.length], c), i % 3 == 0 ? 0 : i / 2));
                }
                Trace[] batched = batched(m, requests);
                for (int i = 0; i < requests.size(); i++) {
                    Trace alone = alone(m, requests.get(i));
                    String what = name + ", " + dtype + ", " + requests.get(i).selection() + ", prompt of "
                            + requests.get(i).prompt().length;
                    assertArrayEquals(alone.tokens(), batched[i].tokens(), what + ": greedy tokens");
                    assertEquals(alone.logits().size(), batched[i].logits().size(), what);
                    for (int s = 0; s < alone.logits().size(); s++) {
                        assertArrayEquals(alone.logits().get(s), batched[i].logits().get(s), what + ": logits of step " + s);
                    }
                    assertEquals(alone.att(), batched[i].att(), what + ": attention experts");
                    assertEquals(alone.mlp(), batched[i].mlp(), what + ": MLP experts");
                }
            }
        }
    }

    /** The single-sequence API, prompt chunks of CHUNK, then greedy decoding. */
    private static Trace alone(InferenceModel m, Request r) {
        Engine e = new Engine(m, r.selection(), TinyModels.CONTEXT, CHUNK);
        List<float[]> logits = new ArrayList<>();
        float[] l = e.prefill(r.prompt());
        logits.add(l.clone());
        int[] out = new int[DECODE];
        for (int t = 0; t < DECODE; t++) {
            out[t] = argmax(l, 0, m.config().vocabSize());
            l = e.decode(out[t]);
            logits.add(l.clone());
        }
        InferenceStats s = e.stats();
        return new Trace(logits, out, s.meanActiveAttention(), s.meanActiveMlp());
    }

    /** All requests through one batched engine: each joins at its start step, prefills in chunks, then decodes. */
    private static Trace[] batched(InferenceModel m, List<Request> requests) {
        int n = requests.size(), vocab = m.config().vocabSize();
        Engine e = Engine.batched(m, 96, TinyModels.CONTEXT, 64);
        Sequence[] seqs = new Sequence[n];
        int[] fed = new int[n], decoded = new int[n], next = new int[n];
        int[][] out = new int[n][DECODE];
        List<List<float[]>> logits = new ArrayList<>();
        for (int i = 0; i < n; i++) logits.add(new ArrayList<>());
        int[] entryOf = new int[n];
        int[][] one = new int[n][1];
        for (int step = 0; ; step++) {
            e.clearStep();
            boolean any = false;
            for (int i = 0; i < n; i++) {
                Request r = requests.get(i);
                entryOf[i] = -1;
                if (step < r.start() || decoded[i] > DECODE) continue;
                if (seqs[i] == null) seqs[i] = e.open(r.selection());
                int len = r.prompt().length;
                if (fed[i] < len) {
                    int k = Math.min(CHUNK, len - fed[i]);
                    entryOf[i] = e.add(seqs[i], r.prompt(), fed[i], k, fed[i] + k == len ? Engine.Logits.LAST : Engine.Logits.NONE);
                    fed[i] += k;
                } else if (decoded[i] < DECODE) {
                    one[i][0] = next[i];
                    entryOf[i] = e.add(seqs[i], one[i], 0, 1, Engine.Logits.LAST);
                    decoded[i]++;
                } else {
                    decoded[i]++; // done: leaves the batch
                }
                any |= entryOf[i] >= 0;
            }
            if (!any && Arrays.stream(decoded).allMatch(d -> d > DECODE)) break;
            e.run();
            for (int i = 0; i < n; i++) {
                if (entryOf[i] < 0 || fed[i] < requests.get(i).prompt().length) continue;
                float[] l = Arrays.copyOfRange(e.logits(), e.logitsRow(entryOf[i]) * vocab, (e.logitsRow(entryOf[i]) + 1) * vocab);
                logits.get(i).add(l);
                if (decoded[i] < DECODE) out[i][decoded[i]] = next[i] = argmax(l, 0, vocab);
            }
        }
        Trace[] traces = new Trace[n];
        for (int i = 0; i < n; i++) {
            InferenceStats s = e.stats(seqs[i]);
            traces[i] = new Trace(logits.get(i), out[i], s.meanActiveAttention(), s.meanActiveMlp());
            e.close(seqs[i]);
        }
        assertEquals(0, e.cache().blocksInUse(), "every block is given back");
        return traces;
    }

    @Test
    void theCacheGrowsByBlocksAndGivesThemBackWhenASequenceEnds() {
        ModelConfig c = TinyModels.dsmoe();
        ParamLayout layout = ParamLayout.of(c);
        try (InferenceModel m = InferenceModel.fromParams(layout, TinyModels.params(layout, 1), MatVec.DType.F32)) {
            Engine e = Engine.batched(m, 64, TinyModels.CONTEXT, 4);
            KvCache kv = e.cache();
            assertEquals(0, kv.bytes(), "nothing is allocated before a sequence has positions");
            Sequence a = e.open(ExpertSelection.dense()), b = e.open(ExpertSelection.topK(2));
            int[] prompt = TinyModels.tokens(20, c.vocabSize(), 5);
            e.clearStep();
            e.add(a, prompt, 0, 20, Engine.Logits.LAST);
            e.add(b, prompt, 0, 3, Engine.Logits.LAST);
            e.run();
            assertEquals(2 + 1, kv.blocksInUse(), "20 positions take 2 blocks of 16, 3 take 1");
            assertEquals(3 * kv.blockBytes(), kv.bytes());
            e.close(a);
            assertEquals(1, kv.blocksInUse());
            Sequence c2 = e.open(ExpertSelection.dense());
            e.clearStep();
            e.add(c2, prompt, 0, 16, Engine.Logits.NONE);
            e.run();
            assertEquals(3 * kv.blockBytes(), kv.bytes(), "a freed block is reused, not allocated anew");

            // A step that needs more blocks than are free fails whole and changes nothing.
            Sequence big = e.open(ExpertSelection.dense());
            int[] longPrompt = TinyModels.tokens(TinyModels.CONTEXT, c.vocabSize(), 6);
            e.clearStep();
            e.add(big, longPrompt, 0, 48, Engine.Logits.NONE);
            e.add(b, prompt, 3, 1, Engine.Logits.LAST);
            IllegalStateException full = assertThrows(IllegalStateException.class, e::run);
            assertTrue(full.getMessage().contains("KV cache is full"), full.getMessage());
            assertEquals(0, big.length());
            assertEquals(3, b.length());
            assertEquals(2, kv.blocksInUse());
            e.close(c2);
            e.close(b);
            e.clearStep();
            e.add(big, longPrompt, 0, 48, Engine.Logits.LAST);
            e.run();
            assertEquals(3, kv.blocksInUse());
        }
    }

    @Test
    void badStepsAreRefused() {
        ModelConfig c = TinyModels.smoe();
        ParamLayout layout = ParamLayout.of(c);
        try (InferenceModel m = InferenceModel.fromParams(layout, TinyModels.params(layout, 1), MatVec.DType.F32)) {
            Engine e = Engine.batched(m, 16, TinyModels.CONTEXT, 8);
            Sequence s = e.open(ExpertSelection.dense());
            int[] t = TinyModels.tokens(20, c.vocabSize(), 1);
            e.clearStep();
            assertThrows(IllegalArgumentException.class, () -> e.add(s, t, 0, 17, Engine.Logits.LAST), "more than a step holds");
            e.add(s, t, 0, 4, Engine.Logits.LAST);
            assertThrows(IllegalArgumentException.class, () -> e.add(s, t, 4, 1, Engine.Logits.LAST), "twice in one step");
            assertThrows(IllegalArgumentException.class, () -> e.add(s, new int[] {c.vocabSize()}, 0, 1, Engine.Logits.LAST));
            Engine other = Engine.batched(m, 16, TinyModels.CONTEXT, 8);
            assertThrows(IllegalArgumentException.class, () -> other.add(s, t, 0, 1, Engine.Logits.LAST), "another engine's sequence");
            assertThrows(IllegalArgumentException.class, () -> e.open(ExpertSelection.dense(), TinyModels.CONTEXT + 1));
            Sequence shortOne = e.open(ExpertSelection.dense(), 3);
            assertThrows(IllegalArgumentException.class, () -> e.add(shortOne, t, 0, 4, Engine.Logits.LAST), "past its capacity");
        }
    }

    private static int argmax(float[] a, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) if (a[off + i] > a[off + best]) best = i;
        return best;
    }
}
