package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.model.ModelConfig.Activation;
import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import java.lang.reflect.RecordComponent;
import org.junit.jupiter.api.Test;

public class ModelConfigTest {

    /** A tiny valid DS-MoE config. */
    public static ModelConfig tiny() {
        return new ModelConfig(50, 16, 2, 2, 2, 1, 4, 3, 8, Activation.GELU_TANH, 32, 10000.0, 1e-5, true,
                RouterKind.LINEAR, 256, TrainingRouting.DENSE, 2, AuxLoss.MI, 1e-3, 2e-3).validate();
    }

    private static String message(Runnable r) {
        return assertThrows(IllegalArgumentException.class, r::run).getMessage();
    }

    private static String invalid(ModelConfig c) {
        return message(c::validate);
    }

    // ------------------------------------------------------------------ builder

    @Test
    void toBuilderCopiesEveryComponentAndChangesOnlyWhatIsSet() throws Exception {
        // every component differs from the builder's defaults, so a component the copy missed shows
        ModelConfig odd = new ModelConfig(51, 17, 3, 4, 5, 1, 6, 7, 9, Activation.GELU, 33, 500000.0, 1e-6, false,
                RouterKind.MLP, 40, TrainingRouting.TOP_K, 3, AuxLoss.SWITCH, 1e-3, 2e-3);
        ModelConfig blank = ModelConfig.builder().build();
        for (RecordComponent rc : ModelConfig.class.getRecordComponents()) {
            assertNotEquals(rc.getAccessor().invoke(blank), rc.getAccessor().invoke(odd), rc.getName());
        }
        assertEquals(odd, odd.toBuilder().build());
        ModelConfig changed = odd.toBuilder().dEmb(16).numLayers(2).build();
        assertEquals(new ModelConfig(51, 16, 2, 4, 5, 1, 6, 7, 9, Activation.GELU, 33, 500000.0, 1e-6, false,
                RouterKind.MLP, 40, TrainingRouting.TOP_K, 3, AuxLoss.SWITCH, 1e-3, 2e-3), changed);
    }

    @Test
    void theBuilderStartsAtTheDocumentedDefaults() {
        assertEquals(new ModelConfig(0, 0, 0, 0, 0, 0, 0, 0, 0, Activation.GELU_TANH, 0, 10000.0, 1e-5, true,
                RouterKind.LINEAR, 256, TrainingRouting.DENSE, 2, AuxLoss.MI, 0.0, 0.0), ModelConfig.builder().build());
    }

    @Test
    void choicesAreSpelledInLowerCase() {
        assertEquals("gelu_tanh", Activation.GELU_TANH.json());
        assertEquals("mlp", RouterKind.MLP.json());
        assertEquals("top_k", TrainingRouting.TOP_K.json());
        assertEquals("switch", AuxLoss.SWITCH.json());
    }

    // ------------------------------------------------------------------ validation

    @Test
    void gqaGroupingMessagesNameBothValues() {
        ModelConfig base = tiny();
        assertEquals("num_heads_per_expert (3) must be a multiple of num_key_value_heads (2): each KV head serves"
                + " N_head/N_kv query heads of every attention expert",
                invalid(base.toBuilder().nAtt(2).nHead(3).nKv(2).dAtt(4).build()));
        assertEquals("num_key_value_heads (4) must not exceed num_heads_per_expert (2): query head j of every"
                + " attention expert reads KV head floor(j*N_kv/N_head), so the other KV heads would never be read",
                invalid(base.toBuilder().nAtt(8).nHead(2).nKv(4).dAtt(4).build()));
        base.toBuilder().nAtt(1).nHead(8).nKv(2).dAtt(4).build().validate(); // classic GQA
        base.toBuilder().nAtt(4).nHead(2).nKv(2).dAtt(4).build().validate(); // the paper's DS-MoE: N_head = N_kv
        base.toBuilder().nAtt(4).nHead(4).nKv(1).dAtt(4).build().validate(); // multi-query
    }

    @Test
    void sizesMustBePositiveAndHeadDimEven() {
        assertEquals("vocab_size (0) must be positive", invalid(tiny().toBuilder().vocabSize(0).build()));
        assertEquals("expert_intermediate_size (-1) must be positive", invalid(tiny().toBuilder().dFfd(-1).build()));
        assertEquals("head_dim (5) must be even: RoPE rotates pairs of dimensions",
                invalid(tiny().toBuilder().dAtt(5).build()));
        assertEquals("max_position_embeddings (0) must be positive", invalid(tiny().toBuilder().maxPositions(0).build()));
        assertEquals("router_hidden_size (0) must be positive", invalid(tiny().toBuilder().routerHiddenSize(0).build()));
    }

    /** Positions size the RoPE tables and a full KV cache (2^20 at most); layers, and widths the training step indexes in int, are bounded too. */
    @Test
    void positionsAndTotalWidthsHaveUpperBounds() {
        tiny().toBuilder().maxPositions(ModelConfig.MAX_POSITIONS).build().validate();
        assertEquals("max_position_embeddings (2000000000) must be at most 1048576: the RoPE tables and the KV cache are sized by it",
                invalid(tiny().toBuilder().maxPositions(2_000_000_000).build()));
        assertEquals("num_hidden_layers (2000000000) must be at most 65536",
                invalid(tiny().toBuilder().numLayers(2_000_000_000).build()));
        assertEquals("num_mlp_experts*expert_intermediate_size (4294967296) is too large",
                invalid(tiny().toBuilder().nFfd(65536).dFfd(65536).build()));
        assertEquals("num_attention_experts*num_heads_per_expert*head_dim (2147483648) is too large",
                invalid(tiny().toBuilder().nAtt(65536).nHead(2).nKv(1).dAtt(16384).build()));
    }

    @Test
    void topKRoutingRulesHaveOneMessageEach() {
        ModelConfig smoe = tiny().toBuilder().nAtt(1).auxLoss(AuxLoss.SWITCH).auxWeightAtt(0).auxWeightFfd(0.01).build();
        ModelConfig.Builder topK = smoe.toBuilder().trainingRouting(TrainingRouting.TOP_K);
        topK.trainingTopK(2).build().validate();
        topK.trainingTopK(3).build().validate();
        assertEquals("training_top_k (4) must be between 1 and num_mlp_experts (3) when training_routing is \"top_k\"",
                invalid(topK.trainingTopK(4).build()));
        assertEquals("training_top_k (0) must be >= 1", invalid(topK.trainingTopK(0).build()));
        assertEquals("training_routing \"top_k\" requires num_attention_experts = 1 (got 2): top-k training routes"
                + " MLP experts only, as in the SMoE baseline",
                invalid(tiny().toBuilder().trainingRouting(TrainingRouting.TOP_K).trainingTopK(2).build()));
        assertEquals("aux_loss \"switch\" requires training_routing \"top_k\" (got \"dense\"): the switch loss"
                + " counts the tokens routed to each expert", invalid(smoe));
        // K is irrelevant under dense routing: a K above N_ffd is not an error there.
        tiny().toBuilder().trainingRouting(TrainingRouting.DENSE).trainingTopK(9).build().validate();
    }

    @Test
    void realValuedSettingsMustBeFiniteAndInRange() {
        assertEquals("aux_loss_weight_mlp (-1.0) must be a finite number >= 0",
                invalid(tiny().toBuilder().auxWeightAtt(0).auxWeightFfd(-1.0).build()));
        assertEquals("aux_loss_weight_attention (NaN) must be a finite number >= 0",
                invalid(tiny().toBuilder().auxWeightAtt(Double.NaN).auxWeightFfd(0).build()));
        assertEquals("rope_theta (0.0) must be a finite number > 0", invalid(tiny().toBuilder().ropeTheta(0).build()));
        assertEquals("rms_norm_eps (Infinity) must be a finite number > 0",
                invalid(tiny().toBuilder().rmsNormEps(Double.POSITIVE_INFINITY).build()));
    }

    @Test
    void everyProblemIsReportedOnOneLine() {
        ModelConfig bad = tiny().toBuilder().vocabSize(0).ropeTheta(-1).build();
        assertEquals("vocab_size (0) must be positive; rope_theta (-1.0) must be a finite number > 0", invalid(bad));
        assertEquals(2, bad.validationErrors().size());
        assertTrue(tiny().validationErrors().isEmpty());
    }
}
