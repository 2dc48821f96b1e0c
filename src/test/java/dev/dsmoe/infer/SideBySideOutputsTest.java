package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The MoA output experts side by side ({@link InferenceModel#attentionOutputSideBySide}): a token
 * that chose every attention expert gets from the one product over them what the expert pieces
 * give (to float rounding: the sums go in another order), in every weight format; a token that
 * chose some of them goes the pieces' way as before (the same bits).
 */
class SideBySideOutputsTest {

    @Test
    void everyExpertSideBySideGivesWhatThePiecesGive() {
        ModelConfig c = TinyModels.dsmoeBlockWideExperts(); // every format keeps the copy
        ParamLayout layout = ParamLayout.of(c);
        float[] params = TinyModels.params(layout, 5);
        int[] prompt = TinyModels.tokens(19, c.vocabSize(), 6);
        for (MatVec.DType dtype : MatVec.DType.values()) {
            try (InferenceModel pieces = load(layout, params, dtype, false); InferenceModel wide = load(layout, params, dtype, true)) {
                assertNull(pieces.attentionOutputSideBySide(0));
                assertNotNull(wide.attentionOutputSideBySide(1), dtype + " keeps the copy");
                // chunks of 12: a prompt chunk through the GEMM (more than 8 tokens) and one through the mat-vec, then decode
                List<float[]> want = run(pieces, "dense", prompt), got = run(wide, "dense", prompt);
                for (int s = 0; s < want.size(); s++) close(want.get(s), got.get(s), dtype + ", dense, step " + s);
                want = run(pieces, "top-k:att=1,mlp=3", prompt);
                got = run(wide, "top-k:att=1,mlp=3", prompt);
                for (int s = 0; s < want.size(); s++) {
                    assertArrayEquals(want.get(s), got.get(s), dtype + ": one of two attention experts goes the pieces' way, step " + s);
                }
            }
        }
    }

    private static InferenceModel load(ParamLayout layout, float[] params, MatVec.DType dtype, boolean sideBySide) {
        String key = "dsmoe.moaSideBySide", before = System.getProperty(key);
        System.setProperty(key, Boolean.toString(sideBySide));
        try {
            return InferenceModel.fromParams(layout, params, dtype);
        } finally {
            if (before == null) System.clearProperty(key);
            else System.setProperty(key, before);
        }
    }

    /** The prompt's last logits, then four greedy decode steps' (the same tokens fed to both models). */
    private static List<float[]> run(InferenceModel m, String selection, int[] prompt) {
        Engine e = new Engine(m, ExpertSelection.parse(selection, m.config()), TinyModels.CONTEXT, 12);
        List<float[]> out = new ArrayList<>();
        out.add(e.prefill(prompt).clone());
        for (int t = 0; t < 4; t++) out.add(e.decode((7 * t + 3) % m.config().vocabSize()).clone());
        return out;
    }

    private static void close(float[] want, float[] got, String what) {
        assertEquals(want.length, got.length, what);
        double scale = 0;
        for (float v : want) scale = Math.max(scale, Math.abs(v));
        for (int i = 0; i < want.length; i++) {
            assertTrue(Math.abs(want[i] - got[i]) <= 1e-5 * scale + 1e-6, what + ", logit " + i + ": " + want[i] + " vs " + got[i]);
        }
    }
}
