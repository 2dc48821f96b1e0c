package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ParamLayout.Role;
import dev.dsmoe.model.ParamLayout.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class ParamLayoutTest {

    /** "name [shape]" for every tensor, in order. */
    private static List<String> describe(ParamLayout p) {
        List<String> out = new ArrayList<>();
        for (Tensor t : p.tensors()) out.add(t.name() + " " + Arrays.toString(t.shape()));
        return out;
    }

    @Test
    void tinyDsmoeHasTheArchitectureNamesAndShapesInFileOrder() {
        // V=50 d=16 L=2 N_att=2 N_head=2 N_kv=1 D_att=4 N_ffd=3 D_ffd=8
        ParamLayout p = ParamLayout.of(ModelConfigTest.tiny());
        List<String> expected = new ArrayList<>();
        expected.add("model.embed_tokens.weight [50, 16]");
        for (int l = 0; l < 2; l++) {
            String q = "model.layers." + l + ".";
            expected.addAll(List.of(
                    q + "input_layernorm.weight [16]",
                    q + "attn.router.weight [2, 16]",
                    q + "attn.q_proj.weight [2, 8, 16]",
                    q + "attn.k_proj.weight [4, 16]",
                    q + "attn.v_proj.weight [4, 16]",
                    q + "attn.o_proj.weight [2, 16, 8]",
                    q + "post_attention_layernorm.weight [16]",
                    q + "mlp.router.weight [3, 16]",
                    q + "mlp.up_proj.weight [3, 8, 16]",
                    q + "mlp.down_proj.weight [3, 16, 8]"));
        }
        expected.add("model.norm.weight [16]");
        assertEquals(expected, describe(p));
        assertSame(p.byRole().embedTokens(), p.byRole().outputProjection());
        assertFalse(p.contains("lm_head.weight"));
    }

    @Test
    void denseLayoutHasNoRoutersButKeepsTheExpertDimension() {
        ParamLayout p = ParamLayout.of(ModelPresets.get("dense-small"));
        assertTrue(p.tensors().stream().noneMatch(t -> t.name().contains("router")));
        assertTrue(p.tensors().stream().noneMatch(t -> t.role() == Role.ROUTER));
        assertNull(p.byRole().layer(0).attnRouter());
        assertNull(p.byRole().layer(3).mlpRouter());
        assertArrayEquals(new int[] {1, 256, 256}, p.tensor("model.layers.0.attn.q_proj.weight").shape());
        assertArrayEquals(new int[] {64, 256}, p.tensor("model.layers.0.attn.k_proj.weight").shape());
        assertArrayEquals(new int[] {1, 256, 256}, p.tensor("model.layers.0.attn.o_proj.weight").shape());
        assertArrayEquals(new int[] {1, 1024, 256}, p.tensor("model.layers.3.mlp.up_proj.weight").shape());
        assertArrayEquals(new int[] {1, 256, 1024}, p.tensor("model.layers.3.mlp.down_proj.weight").shape());
        assertEquals(2 + 4 * 8, p.tensors().size());
    }

    @Test
    void untiedLmHeadIsTheLastTensorAndDecays() {
        ModelConfig c = ModelConfigTest.tiny().toBuilder().tieWordEmbeddings(false).build();
        ParamLayout p = ParamLayout.of(c);
        Tensor last = p.tensors().get(p.tensors().size() - 1);
        assertEquals("lm_head.weight", last.name());
        assertArrayEquals(new int[] {50, 16}, last.shape());
        assertSame(last, p.byRole().outputProjection());
        assertEquals(Role.LM_HEAD, last.role());
        assertTrue(last.weightDecay());
        assertEquals(p.totalSize(), last.end());
        assertEquals(ParamCountsTest.handTotal(c), p.totalSize());
    }

    @Test
    void mlpRouterIsTwoBiasFreeLinearsNamedLikeNnSequential() {
        ParamLayout p = ParamLayout.of(ModelConfigTest.tiny().toBuilder().router(RouterKind.MLP).build());
        assertFalse(p.contains("model.layers.0.attn.router.weight"));
        assertArrayEquals(new int[] {256, 16}, p.tensor("model.layers.0.attn.router.0.weight").shape());
        assertArrayEquals(new int[] {2, 256}, p.tensor("model.layers.0.attn.router.2.weight").shape());
        assertArrayEquals(new int[] {256, 16}, p.tensor("model.layers.1.mlp.router.0.weight").shape());
        assertArrayEquals(new int[] {3, 256}, p.tensor("model.layers.1.mlp.router.2.weight").shape());
        ParamLayout.Router<ParamLayout.Tensor> r = p.byRole().layer(1).mlpRouter();
        assertSame(p.tensor("model.layers.1.mlp.router.0.weight"), r.hidden());
        assertSame(p.tensor("model.layers.1.mlp.router.2.weight"), r.out());
        assertEquals(ParamCountsTest.handTotal(p.config()), p.totalSize());
        ParamLayout narrow = ParamLayout.of(ModelConfigTest.tiny().toBuilder().router(RouterKind.MLP).routerHiddenSize(7).build());
        assertArrayEquals(new int[] {7, 16}, narrow.tensor("model.layers.0.attn.router.0.weight").shape());
        assertArrayEquals(new int[] {3, 7}, narrow.tensor("model.layers.1.mlp.router.2.weight").shape());
        assertEquals(ParamCountsTest.handTotal(narrow.config()), narrow.totalSize());
    }

    @Test
    void offsetsTileTheBufferAndTotalSizeIsTheParameterCountForEveryPreset() {
        List<ModelConfig> configs = new ArrayList<>();
        for (String n : ModelPresets.names()) configs.add(ModelPresets.get(n));
        configs.add(ModelConfigTest.tiny().toBuilder().tieWordEmbeddings(false).router(RouterKind.MLP).build());
        for (ModelConfig c : configs) {
            ParamLayout p = ParamLayout.of(c);
            long next = 0;
            for (Tensor t : p.tensors()) {
                assertEquals(next, t.offset(), t.name());
                long n = 1;
                for (int s : t.shape()) n *= s;
                assertEquals(n, t.numel(), t.name());
                assertTrue(t.numel() > 0, t.name());
                next = t.end();
            }
            assertEquals(next, p.totalSize());
            assertEquals(ParamCountsTest.handTotal(c), p.totalSize());
            assertEquals(p.tensors().size(), p.tensors().stream().map(Tensor::name).distinct().count());
        }
    }

    @Test
    void layerAccessorsAreTheNamedTensors() {
        ParamLayout p = ParamLayout.of(ModelPresets.get("dsmoe-small"));
        for (int l = 0; l < p.byRole().numLayers(); l++) {
            String q = "model.layers." + l + ".";
            ParamLayout.Layer<ParamLayout.Tensor> L = p.byRole().layer(l);
            assertEquals(l, L.index());
            assertSame(p.tensor(q + "input_layernorm.weight"), L.inputNorm());
            assertSame(p.tensor(q + "attn.router.weight"), L.attnRouter().out());
            assertNull(L.attnRouter().hidden());
            assertSame(p.tensor(q + "attn.q_proj.weight"), L.qProj());
            assertSame(p.tensor(q + "attn.k_proj.weight"), L.kProj());
            assertSame(p.tensor(q + "attn.v_proj.weight"), L.vProj());
            assertSame(p.tensor(q + "attn.o_proj.weight"), L.oProj());
            assertSame(p.tensor(q + "post_attention_layernorm.weight"), L.postAttnNorm());
            assertSame(p.tensor(q + "mlp.router.weight"), L.mlpRouter().out());
            assertSame(p.tensor(q + "mlp.up_proj.weight"), L.upProj());
            assertSame(p.tensor(q + "mlp.down_proj.weight"), L.downProj());
            assertEquals(l, L.qProj().layer());
        }
        assertEquals(p.byRole().layer(0).qProj().offset(), p.byRole().layer(0).qProj().off());
        assertSame(p.tensor("model.norm.weight"), p.byRole().finalNorm());
        assertEquals(-1, p.byRole().finalNorm().layer());
    }

    /** A view names its tensor's place in the buffer, and each expert's slice of an expert tensor, by role. */
    @Test
    void viewsAreTheTensorsAndTheirExpertsInTheBuffer() {
        ParamLayout p = ParamLayout.of(ModelConfigTest.tiny()); // d=16 N_att=2 N_head·D_att=8 N_ffd=3 D_ffd=8
        float[] buf = p.newBuffer();
        ParamLayout.Weights<F32Tensor> w = p.views(buf);
        for (int l = 0; l < p.byRole().numLayers(); l++) {
            ParamLayout.Layer<F32Tensor> v = w.layer(l);
            ParamLayout.Layer<Tensor> t = p.byRole().layer(l);
            assertSame(buf, v.oProj().array());
            assertEquals(t.qProj().off(), v.qProj().off());
            assertEquals(2 * 8, v.qProj().rows());
            assertEquals(16, v.qProj().cols());
            for (int e = 0; e < 2; e++) {
                assertEquals(t.oProj().off() + e * 16 * 8, v.oProj().expert(e).off());
                assertEquals(16, v.oProj().expert(e).rows());
                assertEquals(8, v.oProj().expert(e).cols());
            }
            for (int e = 0; e < 3; e++) assertEquals(t.upProj().off() + e * 8 * 16, v.upProj().expert(e).off());
            assertEquals(t.mlpRouter().out().off(), v.mlpRouter().out().off());
            assertEquals(t.inputNorm().off(), v.inputNorm().off());
            assertEquals(16, v.inputNorm().cols());
        }
        assertEquals(p.byRole().embedTokens().off(), w.outputProjection().off());
        assertEquals(p.byRole().finalNorm().off(), w.finalNorm().off());
        assertThrows(IllegalArgumentException.class, () -> p.views(new float[3]));
    }

    @Test
    void unknownTensorNameIsAnErrorNamingIt() {
        ParamLayout p = ParamLayout.of(ModelPresets.get("dense-small"));
        String msg = assertThrows(IllegalArgumentException.class,
                () -> p.tensor("model.layers.0.attn.router.weight")).getMessage();
        assertEquals("no parameter tensor named \"model.layers.0.attn.router.weight\" in this 34-tensor layout"
                + " (e.g. model.embed_tokens.weight, model.layers.0.attn.q_proj.weight)", msg);
    }

    @Test
    void onlyNormGainsAreExemptFromWeightDecay() {
        ParamLayout p = ParamLayout.of(ModelPresets.get("dsmoe-small"));
        for (Tensor t : p.tensors()) {
            boolean norm = t.name().endsWith("layernorm.weight") || t.name().equals("model.norm.weight");
            assertEquals(norm, t.role() == Role.NORM, t.name());
            assertEquals(!norm, t.weightDecay(), t.name());
        }
        long d = 256;
        assertEquals(p.totalSize() - (2 * 4 + 1) * d, p.decayedParams());
        assertTrue(p.tensor("model.embed_tokens.weight").weightDecay());
        assertTrue(p.tensor("model.layers.2.attn.router.weight").weightDecay());
    }

    @Test
    void layoutsTooBigForOneArraySaySo() {
        ParamLayout big = ParamLayout.of(ModelPresets.get("dense-3b"));
        assertFalse(big.fitsInArray());
        String msg = assertThrows(IllegalStateException.class, big::newBuffer).getMessage();
        assertTrue(msg.startsWith("this model has " + big.totalSize() + " parameters"), msg);
        Tensor last = big.byRole().finalNorm();
        assertThrows(IllegalStateException.class, last::off);
        ParamLayout small = ParamLayout.of(ModelPresets.get("dense-small"));
        assertTrue(small.fitsInArray());
        assertEquals(small.totalSize(), small.newBuffer().length);
    }

    @Test
    void layoutRejectsAnInvalidConfig() {
        assertThrows(IllegalArgumentException.class, () -> ParamLayout.of(ModelConfigTest.tiny().toBuilder().vocabSize(0).build()));
    }

    @Test
    void tensorShapeCannotBeMutatedThroughTheRecord() {
        Tensor t = ParamLayout.of(ModelConfigTest.tiny()).byRole().embedTokens();
        t.shape()[0] = 7;
        assertEquals(50, t.dim(0));
        assertEquals(2, t.rank());
    }
}
