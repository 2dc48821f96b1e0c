package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.infer.ExpertSelection.Kind;
import dev.dsmoe.infer.ExpertSelection.Rule;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ExpertSelectionTest {

    @Test
    void parsesEveryFormWithMoaDenseUnlessAsked() {
        assertEquals(ExpertSelection.dense(), ExpertSelection.parse("dense"));
        assertEquals(new ExpertSelection(Rule.DENSE, Rule.topK(2)), ExpertSelection.parse("top-k:2"));
        assertEquals(new ExpertSelection(Rule.topK(4), Rule.topK(2)), ExpertSelection.parse("top-k:att=4,mlp=2"));
        assertEquals(new ExpertSelection(Rule.topK(4), Rule.DENSE), ExpertSelection.parse("top-k:att=4"));
        assertEquals(new ExpertSelection(Rule.DENSE, Rule.threshold(0.48)), ExpertSelection.parse("threshold:0.48"));
        assertEquals(new ExpertSelection(Rule.threshold(0.3), Rule.threshold(0.48)),
                ExpertSelection.parse(" Threshold:att=0.3, mlp=0.48 "));
        assertEquals(new ExpertSelection(Rule.DENSE, Rule.thresholdTopK(0.48)), ExpertSelection.parse("threshold-top-k:0.48"));
        assertEquals(ExpertSelection.topK(2), ExpertSelection.parse("default", TinyModels.smoe()));
        assertEquals(ExpertSelection.dense(), ExpertSelection.parse("default", TinyModels.dsmoe()));
    }

    @ParameterizedTest
    @ValueSource(strings = {"dense", "top-k:2", "top-k:att=4,mlp=2", "top-k:att=3", "threshold:0.48",
            "threshold:att=0.3,mlp=0.48", "threshold-top-k:0.5", "threshold:0"})
    void canonicalFormParsesBack(String form) {
        ExpertSelection s = ExpertSelection.parse(form);
        assertEquals(s, ExpertSelection.parse(s.toString()));
        assertEquals(form, s.toString());
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "sparse", "top-k", "top-k:", "top-k:0", "top-k:two", "top-k:att=1,att=2",
            "top-k:foo=1", "threshold:-1", "threshold:abc", "top-k:att:1"})
    void badFormsNameTheAcceptedForms(String form) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ExpertSelection.parse(form));
        assertTrue(e.getMessage().contains("accepted forms") || e.getMessage().contains("needs"), e.getMessage());
    }

    @Test
    void topKLargerThanTheExpertCountIsRejectedForTheModel() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ExpertSelection.parse("top-k:7", TinyModels.dsmoe()));
        assertTrue(e.getMessage().contains("num_mlp_experts (6)"), e.getMessage());
    }

    @Test
    void thresholdKeepsEveryExpertAboveEpsilonAndAtLeastTheTopOne() {
        float[] probs = {0.1f, 0.5f, 0.25f, 0.15f, // N·S = 0.4, 2.0, 1.0, 0.6
                         0.26f, 0.24f, 0.25f, 0.25f}; // nearly uniform: N·S ≈ 1
        int[] chosen = new int[8];
        float[] gates = new float[8];
        int w = Rule.threshold(0.8).select(probs, 2, 4, chosen, gates);
        assertEquals(4, w);
        assertArrayEquals(new int[] {1, 2, -1, -1, 0, 1, 2, 3}, chosen);
        assertEquals(0.5f, gates[0]);
        w = Rule.threshold(3.0).select(probs, 2, 4, chosen, gates);
        assertArrayEquals(new int[] {1, -1, -1, -1, 0, -1, -1, -1}, chosen);
        // threshold-top-k: counts at 0.8 are 2 and 4, so K = 3 for both tokens
        w = Rule.thresholdTopK(0.8).select(probs, 2, 4, chosen, gates);
        assertEquals(3, w);
        assertArrayEquals(new int[] {1, 2, 3, 0, 2, 3}, java.util.Arrays.copyOf(chosen, 6));
        assertEquals(Kind.TOP_K, ExpertSelection.parse("top-k:1").mlp().kind());
    }
}
