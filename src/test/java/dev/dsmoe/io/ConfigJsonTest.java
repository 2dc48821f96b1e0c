package dev.dsmoe.io;

import static dev.dsmoe.model.ModelConfigTest.tiny;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelConfig.Activation;
import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import dev.dsmoe.model.ModelPresets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class ConfigJsonTest {

    private static final ObjectMapper M = new ObjectMapper();

    private static String message(Runnable r) {
        return assertThrows(IllegalArgumentException.class, r::run).getMessage();
    }

    private static ObjectNode json(ModelConfig c) {
        try {
            return (ObjectNode) M.readTree(ConfigJson.toJson(c));
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    private static String read(ObjectNode o) {
        return message(() -> ConfigJson.fromJson(o.toString()));
    }

    @Test
    void jsonRoundTripReturnsAnEqualConfigForEveryPreset() {
        for (String name : ModelPresets.names()) {
            ModelConfig c = ModelPresets.get(name);
            assertEquals(c, ConfigJson.fromJson(ConfigJson.toJson(c)), name);
        }
        ModelConfig odd = tiny().toBuilder().router(RouterKind.MLP).routerHiddenSize(40).hiddenAct(Activation.GELU)
                .tieWordEmbeddings(false).ropeTheta(500000.0).rmsNormEps(1e-6).auxWeightAtt(3.5e-4).auxWeightFfd(6.3e-4).build();
        assertEquals(odd, ConfigJson.fromJson(ConfigJson.toJson(odd)));
    }

    /** The bytes of config.json, pinned: Jackson's default pretty printer, every key in file order. */
    @Test
    void configJsonTextIsPinned() {
        assertEquals("""
                {
                  "model_type" : "dsmoe",
                  "vocab_size" : 8192,
                  "hidden_size" : 256,
                  "num_hidden_layers" : 4,
                  "num_attention_experts" : 4,
                  "num_heads_per_expert" : 2,
                  "num_key_value_heads" : 2,
                  "head_dim" : 32,
                  "num_mlp_experts" : 16,
                  "expert_intermediate_size" : 64,
                  "hidden_act" : "gelu_tanh",
                  "max_position_embeddings" : 256,
                  "rope_theta" : 10000.0,
                  "rms_norm_eps" : 1.0E-5,
                  "tie_word_embeddings" : true,
                  "router" : "linear",
                  "router_hidden_size" : 256,
                  "training_routing" : "dense",
                  "training_top_k" : 2,
                  "aux_loss" : "mi",
                  "aux_loss_weight_attention" : 3.5E-4,
                  "aux_loss_weight_mlp" : 6.3E-4
                }""", ConfigJson.toJson(ModelPresets.get("dsmoe-small")));
    }

    @Test
    void toJsonIsOneFlatObjectWithEveryKeyInOrder() throws Exception {
        var node = M.readTree(ConfigJson.toJson(tiny()));
        List<String> keys = new ArrayList<>();
        node.fieldNames().forEachRemaining(keys::add);
        assertEquals(ConfigJson.keys(), keys);
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
        ModelConfig c = ConfigJson.fromJson(text);
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
        String msg = read(o);
        assertTrue(msg.startsWith("unknown config key \"num_experts\"; known keys: model_type, vocab_size"), msg);
    }

    @Test
    void missingRequiredKeyIsRejectedNamingIt() {
        for (String key : List.of("model_type", "num_key_value_heads", "max_position_embeddings")) {
            ObjectNode o = json(tiny());
            o.remove(key);
            assertEquals("missing required config key \"" + key + "\"", read(o));
        }
    }

    @Test
    void wrongTypesAreRejectedNamingTheKey() {
        ObjectNode a = json(tiny());
        a.put("hidden_size", "16");
        assertEquals("hidden_size must be an integer, got \"16\"", read(a));
        ObjectNode b = json(tiny());
        b.put("vocab_size", 50.5);
        assertEquals("vocab_size must be an integer, got 50.5", read(b));
        ObjectNode c = json(tiny());
        c.put("tie_word_embeddings", 1);
        assertEquals("tie_word_embeddings must be true or false, got 1", read(c));
        ObjectNode d = json(tiny());
        d.put("rope_theta", "big");
        assertEquals("rope_theta must be a number, got \"big\"", read(d));
        ObjectNode e = json(tiny());
        e.put("hidden_act", "relu");
        assertEquals("hidden_act must be one of \"gelu_tanh\", \"gelu\"; got \"relu\"", read(e));
        ObjectNode f = json(tiny());
        f.put("model_type", "llama");
        assertEquals("model_type must be \"dsmoe\", got \"llama\"", read(f));
        ObjectNode g = json(tiny());
        g.put("num_hidden_layers", 3_000_000_000L);
        assertEquals("num_hidden_layers must be an integer, got 3000000000", read(g));
    }

    /** Jackson's coercions are not config.json's: no number from text, no flag from a number, no null, exact spellings. */
    @Test
    void valuesAreNotCoerced() {
        Object[][] cases = {{"rope_theta", "NaN", "rope_theta must be a number, got \"NaN\""},
                {"aux_loss_weight_mlp", "1e-3", "aux_loss_weight_mlp must be a number, got \"1e-3\""},
                {"head_dim", 32.0, "head_dim must be an integer, got 32.0"},
                {"tie_word_embeddings", "true", "tie_word_embeddings must be true or false, got \"true\""},
                {"router", 1, "router must be a string, got 1"},
                {"router", "LINEAR", "router must be one of \"linear\", \"mlp\"; got \"LINEAR\""},
                {"aux_loss", "", "aux_loss must be one of \"mi\", \"switch\", \"none\"; got \"\""},
                {"training_routing", null, "training_routing must be a string, got null"},
                {"vocab_size", null, "vocab_size must be an integer, got null"}};
        for (Object[] c : cases) {
            ObjectNode o = json(tiny());
            o.set((String) c[0], M.valueToTree(c[1]));
            assertEquals(c[2], read(o));
        }
    }

    @Test
    void malformedAndDuplicateJsonAreRejected() {
        assertTrue(message(() -> ConfigJson.fromJson("{\"vocab_size\": ")).startsWith("config is not valid JSON"));
        assertEquals("config must be one JSON object, got array", message(() -> ConfigJson.fromJson("[1]")));
        String dup = ConfigJson.toJson(tiny()).replaceFirst("\\{", "{\"vocab_size\": 7,");
        assertTrue(message(() -> ConfigJson.fromJson(dup)).contains("vocab_size"));
    }

    @Test
    void fromJsonValidatesValues() {
        ObjectNode o = json(tiny());
        o.put("num_key_value_heads", 3);
        assertTrue(read(o).startsWith("num_key_value_heads (3) must not exceed"));
        ObjectNode p = json(tiny());
        p.put("max_position_embeddings", 2_000_000_000);
        assertTrue(read(p).startsWith("max_position_embeddings (2000000000) must be at most 1048576"), read(p));
    }

    // ------------------------------------------------------------------ overrides by key

    @Test
    void withKeyOverridesByJsonNameAndNamesTheKeyOnError() {
        ModelConfig base = ModelPresets.get("dsmoe-small");
        ModelConfig c = base;
        for (String[] kv : new String[][] {{"vocab_size", "4096"}, {"router", "mlp"}, {"aux_loss_weight_mlp", "1e-3"},
                {"tie_word_embeddings", "false"}}) {
            c = ConfigJson.with(c, kv[0], kv[1]);
        }
        assertEquals(4096, c.vocabSize());
        assertEquals(RouterKind.MLP, c.router());
        assertEquals(1e-3, c.auxWeightFfd());
        assertFalse(c.tieWordEmbeddings());
        assertEquals(base.toBuilder().vocabSize(4096).build(), ConfigJson.with(base, "vocab_size", "4096"));
        assertEquals("num_mlp_experts must be an integer, got \"many\"",
                message(() -> ConfigJson.with(base, "num_mlp_experts", "many")));
        assertTrue(message(() -> ConfigJson.with(base, "experts", "4")).startsWith("unknown config key \"experts\""));
        assertEquals("router must be one of \"linear\", \"mlp\"; got \"deep\"",
                message(() -> ConfigJson.with(base, "router", "deep")));
        // overrides are not validated until asked, so they can be chained through invalid states
        ModelConfig mid = ConfigJson.with(c, "num_key_value_heads", "4");
        assertFalse(mid.validationErrors().isEmpty());
    }

    /**
     * A quantized checkpoint's config.json: the model's keys, then "quantization"; read back as
     * the same model and the type; an unknown type, f32 or a non-string is one message naming the key.
     */
    @Test
    void theQuantizationKeyRoundTripsAndAnUnknownTypeIsNamed() throws Exception {
        ModelConfig c = ModelPresets.get("dsmoe-small");
        for (dev.dsmoe.kernels.MatVec.DType t : new dev.dsmoe.kernels.MatVec.DType[] {dev.dsmoe.kernels.MatVec.DType.Q8_0,
                dev.dsmoe.kernels.MatVec.DType.BF16}) {
            String text = ConfigJson.toJson(c, t);
            List<String> keys = new ArrayList<>();
            M.readTree(text).fieldNames().forEachRemaining(keys::add);
            List<String> expected = new ArrayList<>(ConfigJson.keys());
            expected.add(ConfigJson.QUANTIZATION);
            assertEquals(expected, keys);
            assertEquals(new ConfigJson.Stored(c, t), ConfigJson.read(text));
            assertEquals(c, ConfigJson.fromJson(text));
        }
        assertEquals(ConfigJson.toJson(c), ConfigJson.toJson(c, null));
        assertEquals(null, ConfigJson.read(ConfigJson.toJson(c)).quantization());
        assertFalse(ConfigJson.keys().contains(ConfigJson.QUANTIZATION), "not a model setting (nor a train option)");
        ObjectNode o = json(c);
        o.put(ConfigJson.QUANTIZATION, "q4_0");
        assertEquals("quantization must be \"q8_0\" or \"bf16\" (the types 'dsmoe quantize' writes), got \"q4_0\", which this dsmoe"
                + " does not know", read(o));
        o.put(ConfigJson.QUANTIZATION, "f32");
        assertTrue(read(o).startsWith("quantization \"f32\" is no quantization"), read(o));
        o.put(ConfigJson.QUANTIZATION, 8);
        assertTrue(read(o).startsWith("quantization must be \"q8_0\" or \"bf16\", got 8"), read(o));
    }
}
