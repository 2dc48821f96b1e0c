package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.AdamW;
import dev.dsmoe.model.ModelConfig.Activation;
import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class TransformerTest {

    /** The MLP router's hidden width: unlike every other dimension, so a shape mix-up fails. */
    static final int ROUTER_HIDDEN = 6;

    static ModelConfig tiny(int nAtt, int nHead, int nKv, int nFfd, int dFfd, RouterKind router,
                            TrainingRouting routing, AuxLoss aux) {
        return new ModelConfig(13, 8, 2, nAtt, nHead, nKv, 4, nFfd, dFfd, Activation.GELU_TANH, 16,
                10000.0, 1e-5, true, router, ROUTER_HIDDEN, routing, 2, aux,
                nAtt > 1 ? 0.05 : 0.0, nFfd > 1 ? 0.05 : 0.0).validate();
    }

    static Stream<Arguments> families() {
        return Stream.of(
                Arguments.of("dense (N_att=1, N_ffd=1, N_kv<N_head)",
                        tiny(1, 4, 2, 1, 16, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.NONE)),
                Arguments.of("ds-moe (MI loss)",
                        tiny(2, 2, 2, 4, 4, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.MI)),
                Arguments.of("ds-moe N_kv<N_head",
                        tiny(3, 2, 1, 3, 4, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.MI)),
                Arguments.of("ds-moe N_att=1",
                        tiny(1, 4, 2, 4, 4, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.MI)),
                Arguments.of("ds-moe N_ffd=1",
                        tiny(3, 2, 2, 1, 8, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.MI)),
                Arguments.of("ds-moe MLP router",
                        tiny(2, 2, 2, 3, 4, RouterKind.MLP, TrainingRouting.DENSE, AuxLoss.MI)),
                Arguments.of("smoe top-2 (switch loss)",
                        tiny(1, 4, 2, 4, 4, RouterKind.LINEAR, TrainingRouting.TOP_K, AuxLoss.SWITCH)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("families")
    void forwardMatchesTheExpertByExpertDoubleReference(String name, ModelConfig c) {
        ParamLayout layout = ParamLayout.of(c);
        float[] p = RandomParams.params(layout, 1);
        Transformer model = new Transformer(layout, p, layout.newBuffer());
        int batch = 2, seqLen = 5;
        int[] in = RandomParams.tokens(batch * seqLen, c.vocabSize(), 2);
        int[] tgt = RandomParams.tokens(batch * seqLen, c.vocabSize(), 3);
        Transformer.Loss loss = model.forward(in, tgt, batch, seqLen);
        double[] refLoss = new double[1];
        double[][] ref = new ReferenceModel(layout, ReferenceModel.toDouble(p)).forward(in, tgt, batch, seqLen, refLoss);
        float[] logits = model.logits();
        for (int t = 0; t < ref.length; t++) {
            for (int v = 0; v < c.vocabSize(); v++) {
                assertEquals(ref[t][v], logits[t * c.vocabSize() + v], 1e-4 * (1 + Math.abs(ref[t][v])),
                        "logit t=" + t + " v=" + v);
            }
        }
        assertEquals(refLoss[0], loss.total(), 1e-5 * (1 + Math.abs(refLoss[0])));
    }

    /**
     * Every parameter's gradient (all of them for tensors up to 64 elements, 64 sampled entries
     * otherwise) against central finite differences of the double-precision reference loss.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("families")
    void backwardMatchesFiniteDifferences(String name, ModelConfig c) {
        ParamLayout layout = ParamLayout.of(c);
        float[] p = RandomParams.params(layout, 11);
        float[] grads = layout.newBuffer();
        Transformer model = new Transformer(layout, p, grads);
        int batch = 2, seqLen = 4;
        int[] in = RandomParams.tokens(batch * seqLen, c.vocabSize(), 12);
        int[] tgt = RandomParams.tokens(batch * seqLen, c.vocabSize(), 13);
        tgt[3] = dev.dsmoe.kernels.CrossEntropy.IGNORE; // an ignored position must not contribute
        model.forwardBackward(in, tgt, batch, seqLen, 1f);

        double[] dp = ReferenceModel.toDouble(p);
        ReferenceModel ref = new ReferenceModel(layout, dp);
        SplittableRandom pick = new SplittableRandom(14);
        double h = 1e-5;
        double[] out = new double[1];
        int checked = 0;
        for (ParamLayout.Tensor t : layout.tensors()) {
            double maxAbs = 0;
            for (int i = t.off(); i < t.off() + t.numel(); i++) maxAbs = Math.max(maxAbs, Math.abs(grads[i]));
            int samples = (int) Math.min(t.numel(), 64);
            for (int sIdx = 0; sIdx < samples; sIdx++) {
                int i = t.off() + (t.numel() <= 64 ? sIdx : pick.nextInt((int) t.numel()));
                double keep = dp[i];
                dp[i] = keep + h;
                ref.forward(in, tgt, batch, seqLen, out);
                double up = out[0];
                dp[i] = keep - h;
                ref.forward(in, tgt, batch, seqLen, out);
                double down = out[0];
                dp[i] = keep;
                double numeric = (up - down) / (2 * h);
                double tol = 2e-3 * Math.abs(numeric) + 1e-4 * maxAbs + 1e-6;
                assertEquals(numeric, grads[i], tol, t.name() + "[" + (i - t.off()) + "]");
                checked++;
            }
        }
        assertTrue(checked > 100, "checked " + checked);
    }

    @Test
    void dsMoeWithIdenticalExpertsGivesTheDenseModelsOutput() {
        ModelConfig dense = tiny(1, 2, 2, 1, 8, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.NONE);
        ModelConfig moe = tiny(3, 2, 2, 4, 8, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.NONE);
        ParamLayout dl = ParamLayout.of(dense), ml = ParamLayout.of(moe);
        float[] dp = RandomParams.params(dl, 21);
        float[] mp = RandomParams.params(ml, 22); // routers stay random: the gates sum to 1 whatever they are
        for (ParamLayout.Tensor t : dl.tensors()) {
            ParamLayout.Tensor m = ml.tensor(t.name());
            for (int copy = 0; copy < m.numel() / t.numel(); copy++) {
                System.arraycopy(dp, t.off(), mp, m.off() + copy * (int) t.numel(), (int) t.numel());
            }
        }
        int batch = 2, seqLen = 6;
        int[] in = RandomParams.tokens(batch * seqLen, dense.vocabSize(), 23);
        Transformer d = new Transformer(dl, dp, dl.newBuffer());
        Transformer m = new Transformer(ml, mp, ml.newBuffer());
        d.forward(in, null, batch, seqLen);
        m.forward(in, null, batch, seqLen);
        for (int i = 0; i < batch * seqLen * dense.vocabSize(); i++) {
            assertEquals(d.logits()[i], m.logits()[i], 1e-5 * (1 + Math.abs(d.logits()[i])), "logit " + i);
        }
    }

    @Test
    void tinyDsMoeOverfitsOneBatch() {
        ModelConfig c = tiny(2, 2, 2, 4, 8, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.MI);
        ParamLayout layout = ParamLayout.of(c);
        float[] p = layout.newBuffer();
        Init.initialize(layout, p, 5);
        float[] g = layout.newBuffer(), m = layout.newBuffer(), v = layout.newBuffer();
        Transformer model = new Transformer(layout, p, g);
        int batch = 2, seqLen = 8;
        int[] in = RandomParams.tokens(batch * seqLen, c.vocabSize(), 6);
        int[] tgt = RandomParams.tokens(batch * seqLen, c.vocabSize(), 7);
        double lm = Double.NaN;
        for (int step = 1; step <= 300; step++) {
            java.util.Arrays.fill(g, 0f);
            lm = model.forwardBackward(in, tgt, batch, seqLen, 1f).lm();
            AdamW.update(p, g, m, v, 0, p.length, 1e-2f, 0.9f, 0.999f, 1e-8f, 0f, step);
            if (lm < 0.1) break;
        }
        assertTrue(lm < 0.1, "LM loss after 300 AdamW steps: " + lm);
    }
}
