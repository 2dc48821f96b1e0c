package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import dev.dsmoe.model.ModelPresets.Family;
import dev.dsmoe.model.ParamLayout.Role;
import java.util.List;
import org.junit.jupiter.api.Test;

class ModelPresetsTest {

    private static String message(Runnable r) {
        return assertThrows(IllegalArgumentException.class, r::run).getMessage();
    }

    private static ParamCounts counts(String preset) {
        return ParamCounts.of(ModelPresets.get(preset));
    }

    // ------------------------------------------------------------------ presets

    @Test
    void everyPresetIsValidAndNamesAreStable() {
        assertEquals(List.of("dense-small", "smoe-small", "dsmoe-small", "dense-1b", "smoe-1b", "dsmoe-1b",
                "dense-3b", "dsmoe-3b", "dense-6b", "dsmoe-6b"), ModelPresets.names());
        for (String n : ModelPresets.names()) {
            ModelConfig c = ModelPresets.get(n);
            assertTrue(c.validationErrors().isEmpty(), n);
            assertEquals(n.endsWith("small") ? 8192 : 32000, c.vocabSize(), n);
            assertEquals(n.endsWith("small") ? 256 : 2048, c.maxPositions(), n);
            assertTrue(c.tieWordEmbeddings(), n);
        }
    }

    @Test
    void unknownPresetListsTheKnownNames() {
        assertEquals("unknown model preset \"dsmoe-huge\"; known presets: dense-small, smoe-small, dsmoe-small,"
                + " dense-1b, smoe-1b, dsmoe-1b, dense-3b, dsmoe-3b, dense-6b, dsmoe-6b",
                message(() -> ModelPresets.get("dsmoe-huge")));
    }

    @Test
    void smallPresetsMatchTheMethodTable() {
        ModelConfig d = ModelPresets.get("dense-small");
        ModelConfig s = ModelPresets.get("smoe-small");
        ModelConfig m = ModelPresets.get("dsmoe-small");
        assertShape(d, 256, 4, 1, 8, 2, 32, 1, 1024);
        assertShape(s, 256, 4, 1, 8, 2, 32, 8, 128);
        assertShape(m, 256, 4, 4, 2, 2, 32, 16, 64);
        assertEquals(TrainingRouting.DENSE, d.trainingRouting());
        assertEquals(AuxLoss.NONE, d.auxLoss());
        assertEquals(TrainingRouting.TOP_K, s.trainingRouting());
        assertEquals(2, s.trainingTopK());
        assertEquals(AuxLoss.SWITCH, s.auxLoss());
        assertEquals(TrainingRouting.DENSE, m.trainingRouting());
        assertEquals(AuxLoss.MI, m.auxLoss());
        assertEquals(3.5e-4, m.auxWeightAtt());
        assertEquals(6.3e-4, m.auxWeightFfd());
        // "equal across the three within the routers' few thousand"
        ParamCounts dc = counts("dense-small"), sc = counts("smoe-small"), mc = counts("dsmoe-small");
        assertEquals(dc.nonEmbedding() + sc.count(Role.ROUTER), sc.nonEmbedding());
        assertEquals(dc.nonEmbedding() + mc.count(Role.ROUTER), mc.nonEmbedding());
        assertEquals(4 * (4 + 16) * 256, mc.count(Role.ROUTER));
    }

    @Test
    void bigPresetsHaveThePaperShapesAndWeights() {
        assertShape(ModelPresets.get("dense-1b"), 2048, 24, 1, 32, 2, 64, 1, 8192);
        assertShape(ModelPresets.get("smoe-1b"), 2048, 24, 1, 32, 2, 64, 8, 1024);
        assertShape(ModelPresets.get("dsmoe-1b"), 2048, 24, 16, 2, 2, 64, 32, 256);
        assertShape(ModelPresets.get("dense-3b"), 3072, 28, 1, 32, 4, 96, 1, 12288);
        assertShape(ModelPresets.get("dsmoe-3b"), 3072, 28, 8, 4, 4, 96, 32, 384);
        assertShape(ModelPresets.get("dense-6b"), 4096, 36, 1, 32, 4, 128, 1, 16384);
        assertShape(ModelPresets.get("dsmoe-6b"), 4096, 36, 8, 4, 4, 128, 32, 512);
        assertEquals(2e-4, ModelPresets.get("dsmoe-3b").auxWeightAtt());
        assertEquals(4e-4, ModelPresets.get("dsmoe-3b").auxWeightFfd());
        assertEquals(2e-4, ModelPresets.get("dsmoe-6b").auxWeightFfd());
    }

    private static void assertShape(ModelConfig c, int d, int layers, int nAtt, int nHead, int nKv, int dAtt,
            int nFfd, int dFfd) {
        assertEquals(List.of(d, layers, nAtt, nHead, nKv, dAtt, nFfd, dFfd), List.of(c.dEmb(), c.numLayers(),
                c.nAtt(), c.nHead(), c.nKv(), c.dAtt(), c.nFfd(), c.dFfd()), c.toString());
    }

    // ------------------------------------------------------------------ size matching

    @Test
    void sizeMatchingFollowsThePaperRule() {
        ModelConfig dense = ModelPresets.get("dense-small");
        ModelConfig ds = ModelPresets.sizeMatched(dense, Family.DSMOE, 4, 16);
        assertEquals(ModelPresets.get("dsmoe-small"), ds);
        assertEquals(dense.totalQueryHeads(), ds.totalQueryHeads());
        assertEquals(dense.totalMlpWidth(), ds.totalMlpWidth());
        assertEquals(dense.nKv(), ds.nKv());
        // any family can be the reference: going back from DS-MoE gives the dense preset
        assertEquals(dense, ModelPresets.sizeMatched(ds, Family.DENSE, 1, 1));
        ModelConfig smoe2x = ModelPresets.sizeMatched(dense, Family.SMOE, 1, 8, 2.0);
        assertEquals(256, smoe2x.dFfd());
        assertEquals(2 * dense.totalMlpWidth(), smoe2x.totalMlpWidth());
        assertEquals(ModelPresets.get("smoe-small"), ModelPresets.sizeMatched(dense, Family.SMOE, 1, 8));
    }

    /** --family without --experts: the expert counts of the family's small preset. */
    @Test
    void familyDefaultsAreTheSmallPresetsSplits() {
        ModelConfig dense = ModelPresets.get("dense-small");
        for (Family f : Family.values()) {
            String name = f.name().toLowerCase() + "-small";
            assertEquals(ModelPresets.get(name), ModelPresets.sizeMatched(dense, f, f.nAtt(), f.nFfd()), name);
        }
        assertEquals(List.of(4, 16), List.of(Family.DSMOE.nAtt(), Family.DSMOE.nFfd()));
        assertEquals(List.of(1, 8), List.of(Family.SMOE.nAtt(), Family.SMOE.nFfd()));
        assertEquals(List.of(1, 1), List.of(Family.DENSE.nAtt(), Family.DENSE.nFfd()));
    }

    @Test
    void sizeMatchingRejectsSplitsThatDoNotDivide() {
        ModelConfig dense = ModelPresets.get("dense-small");
        assertEquals("the reference's 8 query heads do not split evenly over num_attention_experts (3)",
                message(() -> ModelPresets.sizeMatched(dense, Family.DSMOE, 3, 16)));
        assertEquals("the MLP width 1024 does not split evenly over num_mlp_experts (6)",
                message(() -> ModelPresets.sizeMatched(dense, Family.DSMOE, 4, 6)));
        assertEquals("smoe has num_attention_experts = 1 (got 2)",
                message(() -> ModelPresets.sizeMatched(dense, Family.SMOE, 2, 8)));
        // 8 heads over 8 experts is 1 query head per expert over 2 KV heads: invalid GQA, said so
        assertTrue(message(() -> ModelPresets.sizeMatched(dense, Family.DSMOE, 8, 16))
                .startsWith("num_key_value_heads (2) must not exceed num_heads_per_expert (1)"));
        assertEquals(Family.SMOE, Family.parse("SMoE"));
        assertEquals("unknown model family \"moe\"; known: dense, smoe, dsmoe", message(() -> Family.parse("moe")));
    }
}
