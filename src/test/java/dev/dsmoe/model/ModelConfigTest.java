package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.model.ModelConfig.Activation;
import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import java.lang.reflect.RecordComponent;
import java.util.List;
import org.junit.jupiter.api.Test;

class ModelConfigTest {

    private static final ObjectMapper M = new ObjectMapper();

    /** A tiny valid DS-MoE config. */
    static ModelConfig tiny() {
        return new ModelConfig(50, 16, 2, 2, 2, 1, 4, 3, 8, Activation.GELU_TANH, 32, 10000.0, 1e-5, true,
                RouterKind.LINEAR, 256, TrainingRouting.DENSE, 2, AuxLoss.MI, 1e-3, 2e-3).validate();
    }

    private static String message(Runnable r) {
        return assertThrows(IllegalArgumentException.class, r::run).getMessage();
    }

    private static String invalid(ModelConfig c) {
        return message(c::validate);
    }

    private static ObjectNode json(ModelConfig c) {
        return c.toJsonNode();
    }

    // ------------------------------------------------------------------ JSON

    @Test
    void jsonRoundTripReturnsAnEqualConfigForEveryPreset() {
        for (String name : ModelPresets.names()) {
            ModelConfig c = ModelPresets.get(name);
            assertEquals(c, ModelConfig.fromJson(c.toJson()), name);
        }
        ModelConfig odd = tiny().toBuilder().router(RouterKind.MLP).routerHiddenSize(40).hiddenAct(Activation.GELU).tieWordEmbeddings(false)
                .ropeTheta(500000.0).rmsNormEps(1e-6).auxLoss(AuxLoss.MI).auxWeightAtt(3.5e-4).auxWeightFfd(6.3e-4).build();
        assertEquals(odd, ModelConfig.fromJson(odd.toJson()));
    }

    @Test
    void toJsonIsOneFlatObjectWithEveryKeyInOrder() throws Exception {
        var node = M.readTree(tiny().toJson());
        List<String> keys = new java.util.ArrayList<>();
        node.fieldNames().forEachRemaining(keys::add);
        assertEquals(ModelConfig.jsonKeys(), keys);
        assertEquals(22, keys.size());
        node.forEach(v -> assertTrue(v.isValueNode(), "flat: " + v));
        assertEquals("dsmoe", node.get("model_type").textValue());
        assertEquals("gelu_tanh", node.get("hidden_act").textValue());
        assertEquals("dense", node.get("training_routing").textValue());
        assertEquals(16, node.get("hidden_size").intValue());
    }

    @Test
    void missingOptionalKeysTakeTheDocumentedDefaults() {
        String text = """
                {"model_type": "dsmoe", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1,
                 "num_attention_experts": 1, "num_heads_per_expert": 4, "num_key_value_heads": 2,
                 "head_dim": 8, "num_mlp_experts": 1, "expert_intermediate_size": 64,
                 "max_position_embeddings": 128}""";
        ModelConfig c = ModelConfig.fromJson(text);
        assertEquals(Activation.GELU_TANH, c.hiddenAct());
        assertEquals(10000.0, c.ropeTheta());
        assertEquals(1e-5, c.rmsNormEps());
        assertTrue(c.tieWordEmbeddings());
        assertEquals(RouterKind.LINEAR, c.router());
        assertEquals(256, c.routerHiddenSize());
        assertEquals(TrainingRouting.DENSE, c.trainingRouting());
        assertEquals(2, c.trainingTopK());
        assertEquals(AuxLoss.MI, c.auxLoss());
        assertEquals(0.0, c.auxWeightAtt());
        assertEquals(0.0, c.auxWeightFfd());
    }

    @Test
    void unknownKeyIsRejectedNamingIt() {
        ObjectNode o = json(tiny());
        o.put("num_experts", 8);
        String msg = message(() -> ModelConfig.fromJson(o.toString()));
        assertTrue(msg.startsWith("unknown config key \"num_experts\"; known keys: model_type, vocab_size"), msg);
    }

    @Test
    void missingRequiredKeyIsRejectedNamingIt() {
        for (String key : List.of("model_type", "num_key_value_heads", "max_position_embeddings")) {
            ObjectNode o = json(tiny());
            o.remove(key);
            assertEquals("missing required config key \"" + key + "\"", message(() -> ModelConfig.fromJson(o.toString())));
        }
    }

    @Test
    void wrongTypesAreRejectedNamingTheKey() {
        ObjectNode a = json(tiny());
        a.put("hidden_size", "16");
        assertEquals("hidden_size must be an integer, got \"16\"", message(() -> ModelConfig.fromJson(a.toString())));
        ObjectNode b = json(tiny());
        b.put("vocab_size", 50.5);
        assertEquals("vocab_size must be an integer, got 50.5", message(() -> ModelConfig.fromJson(b.toString())));
        ObjectNode c = json(tiny());
        c.put("tie_word_embeddings", 1);
        assertEquals("tie_word_embeddings must be true or false, got 1",
                message(() -> ModelConfig.fromJson(c.toString())));
        ObjectNode d = json(tiny());
        d.put("rope_theta", "big");
        assertEquals("rope_theta must be a number, got \"big\"", message(() -> ModelConfig.fromJson(d.toString())));
        ObjectNode e = json(tiny());
        e.put("hidden_act", "relu");
        assertEquals("hidden_act must be one of \"gelu_tanh\", \"gelu\"; got \"relu\"",
                message(() -> ModelConfig.fromJson(e.toString())));
        ObjectNode f = json(tiny());
        f.put("model_type", "llama");
        assertEquals("model_type must be \"dsmoe\", got \"llama\"", message(() -> ModelConfig.fromJson(f.toString())));
        ObjectNode g = json(tiny());
        g.put("num_hidden_layers", 3_000_000_000L);
        assertEquals("num_hidden_layers must be an integer, got 3000000000",
                message(() -> ModelConfig.fromJson(g.toString())));
    }

    @Test
    void malformedAndDuplicateJsonAreRejected() {
        assertTrue(message(() -> ModelConfig.fromJson("{\"vocab_size\": ")).startsWith("config is not valid JSON"));
        assertEquals("config must be one JSON object, got array", message(() -> ModelConfig.fromJson("[1]")));
        String dup = tiny().toJson().replaceFirst("\\{", "{\"vocab_size\": 7,");
        assertTrue(message(() -> ModelConfig.fromJson(dup)).contains("vocab_size"));
    }

    @Test
    void fromJsonValidatesValues() {
        ObjectNode o = json(tiny());
        o.put("num_key_value_heads", 3);
        assertTrue(message(() -> ModelConfig.fromJson(o.toString())).startsWith("num_key_value_heads (3) must not exceed"));
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
                + " N_head/N_kv query heads of every attention expert", invalid(base.toBuilder().nAtt(2).nHead(3).nKv(2).dAtt(4).build()));
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
        assertEquals("expert_intermediate_size (-1) must be positive", invalid(tiny().toBuilder().nFfd(3).dFfd(-1).build()));
        assertEquals("head_dim (5) must be even: RoPE rotates pairs of dimensions",
                invalid(tiny().toBuilder().nAtt(2).nHead(2).nKv(1).dAtt(5).build()));
        assertEquals("max_position_embeddings (0) must be positive", invalid(tiny().toBuilder().maxPositions(0).build()));
        assertEquals("router_hidden_size (0) must be positive", invalid(tiny().toBuilder().routerHiddenSize(0).build()));
    }

    /** Positions size the RoPE tables and a full KV cache (2^20 at most); layers, and widths the training step indexes in int, are bounded too. */
    @Test
    void positionsAndTotalWidthsHaveUpperBounds() {
        tiny().toBuilder().maxPositions(ModelConfig.MAX_POSITIONS).build().validate();
        assertEquals("max_position_embeddings (2000000000) must be at most 1048576: the RoPE tables and the KV cache are sized by it",
                invalid(tiny().toBuilder().maxPositions(2_000_000_000).build()));
        assertEquals("num_hidden_layers (2000000000) must be at most 65536", invalid(tiny().toBuilder().numLayers(2_000_000_000).build()));
        assertEquals("num_mlp_experts*expert_intermediate_size (4294967296) is too large", invalid(tiny().toBuilder().nFfd(65536).dFfd(65536).build()));
        assertEquals("num_attention_experts*num_heads_per_expert*head_dim (2147483648) is too large",
                invalid(tiny().toBuilder().nAtt(65536).nHead(2).nKv(1).dAtt(16384).build()));
        ObjectNode json = (ObjectNode) assertDoesNotThrow(() -> new ObjectMapper().readTree(tiny().toJson()));
        json.put("max_position_embeddings", 2_000_000_000);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ModelConfig.fromJson(json.toString()));
        assertTrue(e.getMessage().startsWith("max_position_embeddings (2000000000) must be at most 1048576"), e.getMessage());
    }

    @Test
    void topKRoutingRulesHaveOneMessageEach() {
        ModelConfig smoe = tiny().toBuilder().nAtt(1).nHead(2).nKv(1).dAtt(4).auxLoss(AuxLoss.SWITCH).auxWeightAtt(0).auxWeightFfd(0.01).build();
        smoe.toBuilder().trainingRouting(TrainingRouting.TOP_K).trainingTopK(2).build().validate();
        smoe.toBuilder().trainingRouting(TrainingRouting.TOP_K).trainingTopK(3).build().validate();
        assertEquals("training_top_k (4) must be between 1 and num_mlp_experts (3) when training_routing is \"top_k\"",
                invalid(smoe.toBuilder().trainingRouting(TrainingRouting.TOP_K).trainingTopK(4).build()));
        assertEquals("training_top_k (0) must be >= 1", invalid(smoe.toBuilder().trainingRouting(TrainingRouting.TOP_K).trainingTopK(0).build()));
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
                invalid(tiny().toBuilder().auxLoss(AuxLoss.MI).auxWeightAtt(0).auxWeightFfd(-1.0).build()));
        assertEquals("aux_loss_weight_attention (NaN) must be a finite number >= 0",
                invalid(tiny().toBuilder().auxLoss(AuxLoss.MI).auxWeightAtt(Double.NaN).auxWeightFfd(0).build()));
        assertEquals("rope_theta (0.0) must be a finite number > 0", invalid(tiny().toBuilder().ropeTheta(0).build()));
        assertEquals("rms_norm_eps (Infinity) must be a finite number > 0",
                invalid(tiny().toBuilder().rmsNormEps(Double.POSITIVE_INFINITY).build()));
    }

    @Test
    void everyProblemIsReportedOnOneLine() {
        String msg = invalid(tiny().toBuilder().vocabSize(0).ropeTheta(-1).build());
        assertEquals("vocab_size (0) must be positive; rope_theta (-1.0) must be a finite number > 0", msg);
        assertEquals(2, tiny().toBuilder().vocabSize(0).ropeTheta(-1).build().validationErrors().size());
        assertTrue(tiny().validationErrors().isEmpty());
    }

    // ------------------------------------------------------------------ with / overrides

    @Test
    void withKeyOverridesByJsonNameAndNamesTheKeyOnError() {
        ModelConfig c = ModelPresets.get("dsmoe-small").with("vocab_size", "4096").with("router", "mlp")
                .with("aux_loss_weight_mlp", "1e-3").with("tie_word_embeddings", "false");
        assertEquals(4096, c.vocabSize());
        assertEquals(RouterKind.MLP, c.router());
        assertEquals(1e-3, c.auxWeightFfd());
        assertFalse(c.tieWordEmbeddings());
        assertEquals(ModelPresets.get("dsmoe-small").toBuilder().vocabSize(4096).build(), ModelPresets.get("dsmoe-small")
                .with("vocab_size", "4096"));
        assertEquals("num_mlp_experts must be an integer, got \"many\"",
                message(() -> c.with("num_mlp_experts", "many")));
        assertTrue(message(() -> c.with("experts", "4")).startsWith("unknown config key \"experts\""));
        assertEquals("router must be one of \"linear\", \"mlp\"; got \"deep\"", message(() -> c.with("router", "deep")));
        // overrides are not validated until asked, so they can be chained through invalid states
        ModelConfig mid = c.with("num_key_value_heads", "4");
        assertFalse(mid.validationErrors().isEmpty());
    }
}
