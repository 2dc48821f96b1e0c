package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The training estimates ({@link Activations#footprint}, {@link Transformer#footprint}) against what is allocated. */
class FootprintTest {

    static Stream<Arguments> configs() {
        ModelConfig base = ModelPresets.get("dense-small").toBuilder().numLayers(2).vocabSize(97).dEmb(24).maxPositions(40).build();
        return Stream.of(
                Arguments.of("dense", base.toBuilder().nAtt(1).nHead(4).nKv(2).dAtt(8).nFfd(1).dFfd(64).build().validate()),
                Arguments.of("smoe top-2", base.toBuilder().nAtt(1).nHead(4).nKv(2).dAtt(8).nFfd(4).dFfd(16)
                        .trainingRouting(TrainingRouting.TOP_K).trainingTopK(2)
                        .auxLoss(AuxLoss.SWITCH).auxWeightAtt(0).auxWeightFfd(0.01).build().validate()),
                Arguments.of("ds-moe", base.toBuilder().nAtt(3).nHead(2).nKv(1).dAtt(8).nFfd(6).dFfd(8)
                        .auxLoss(AuxLoss.MI).auxWeightAtt(0.01).auxWeightFfd(0.01).build().validate()),
                Arguments.of("ds-moe, mlp router, untied", base.toBuilder().nAtt(2).nHead(2).nKv(2).dAtt(8).nFfd(4).dFfd(8)
                        .router(RouterKind.MLP).routerHiddenSize(12).tieWordEmbeddings(false)
                        .auxLoss(AuxLoss.MI).auxWeightAtt(0.01).auxWeightFfd(0.01).build().validate()));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("configs")
    void activationEstimateIsWhatTheArenaAllocates(String name, ModelConfig c) {
        for (int[] bt : new int[][] {{1, 1}, {2, 16}, {3, 40}}) {
            Activations a = new Activations(c, bt[0], bt[1]);
            long real = HeapArrays.bytes(a, o -> false);
            Footprint f = Activations.footprint(c, bt[0], bt[1]);
            assertEquals(real, f.heapBytes(), name + " B=" + bt[0] + " T=" + bt[1]);
            assertEquals(real, a.bytes());
            assertEquals(0, f.nativeBytes());
        }
    }

    /** After a forward and backward, a Transformer holds what its footprint says, besides the buffers it was given. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("configs")
    void transformerEstimateIsWhatATrainingStepHolds(String name, ModelConfig c) {
        ParamLayout layout = ParamLayout.of(c);
        float[] p = RandomParams.params(layout, 1), g = layout.newBuffer();
        Transformer t = new Transformer(layout, p, g);
        int batch = 2, seq = 24;
        int[] in = RandomParams.tokens(batch * seq, c.vocabSize(), 2), tgt = RandomParams.tokens(batch * seq, c.vocabSize(), 3);
        t.forwardBackward(in, tgt, batch, seq, 1f);
        long real = HeapArrays.bytes(t, o -> o == p || o == g || o instanceof ParamLayout || o instanceof ModelConfig);
        assertEquals(real, Transformer.footprint(c, batch, seq).heapBytes(), name);
    }

    @Test
    void anArenaPastAJavaArrayIsCountedAndRefusedNotWrapped() {
        // 65536 x 256 tokens of width 256: n*d = 2^32, which wraps to 0 in int arithmetic.
        ModelConfig c = ModelPresets.get("dense-small");
        Footprint f = Activations.footprint(c, 65536, 256);
        assertEquals(65536L * 256 * 8192, f.longestArray(), "the logits [N, V]");
        assertTrue(f.heapBytes() > 4L * 65536 * 256 * 256 * 4, "at least the four [N, d] arrays of a layer");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Activations(c, 65536, 256));
        assertTrue(e.getMessage().contains("more than a Java array holds"), e.getMessage());
    }

    @Test
    void sizesPastALongSaturate() {
        ModelConfig c = ModelPresets.get("dense-small").toBuilder().dEmb(Integer.MAX_VALUE - 1).maxPositions(1 << 20).build().validate();
        Footprint f = Activations.footprint(c, Integer.MAX_VALUE, 1 << 20);
        assertEquals(Long.MAX_VALUE, f.heapBytes());
    }
}
