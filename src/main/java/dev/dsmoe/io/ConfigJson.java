package dev.dsmoe.io;

import com.fasterxml.jackson.annotation.JsonAutoDetect;
import com.fasterxml.jackson.annotation.JsonAutoDetect.Visibility;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonValue;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.DoubleNode;
import com.fasterxml.jackson.databind.node.IntNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelConfig.Activation;
import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import java.io.IOException;
import java.lang.reflect.RecordComponent;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * {@code config.json}: a {@link ModelConfig} as one flat JSON object (docs/ARCHITECTURE.md,
 * "Files a user sees"). Jackson binds the file's keys onto a {@link ModelConfig.Builder}, which
 * starts at the defaults of the optional keys; {@link Keys} is the one table of keys.
 *
 * <p>Reading is strict, with one message naming the key for each problem: an unknown key, a
 * missing required key, a duplicate key, a value of the wrong JSON type (no coercion: {@code "16"}
 * is not an integer, {@code 1} is not {@code true}), an unknown spelling of a choice; then the
 * {@link ModelConfig#validate()} messages for bad values. Writing gives every key, in the order
 * of {@link #keys()}, indented as Jackson's default pretty printer does.
 */
public final class ConfigJson {

    /**
     * The key a quantized checkpoint ({@code dsmoe quantize}) names its weights' type with:
     * {@code "q8_0"} or {@code "bf16"}. Absent from the fp32 checkpoints training writes. It says
     * how the weights are stored, not what the model is, so it is not one of {@link #keys()} (nor a
     * {@code train} option).
     */
    public static final String QUANTIZATION = "quantization";

    /** What a {@code config.json} holds: the model, and the type its weights are quantized to (null: not quantized). */
    public record Stored(ModelConfig config, MatVec.DType quantization) {}

    /** The {@code model_type} of every config this engine reads or writes. */
    public static final String MODEL_TYPE = "dsmoe";
    private static final String MODEL_TYPE_KEY = "model_type";

    /**
     * The {@code config.json} key and whether it is required, for each component of
     * {@link ModelConfig} (a Jackson mix-in for the builder's fields of the same names).
     */
    @JsonAutoDetect(fieldVisibility = Visibility.ANY, getterVisibility = Visibility.NONE,
            isGetterVisibility = Visibility.NONE, setterVisibility = Visibility.NONE)
    private abstract static class Keys {
        @JsonProperty(value = "vocab_size", required = true) int vocabSize;
        @JsonProperty(value = "hidden_size", required = true) int dEmb;
        @JsonProperty(value = "num_hidden_layers", required = true) int numLayers;
        @JsonProperty(value = "num_attention_experts", required = true) int nAtt;
        @JsonProperty(value = "num_heads_per_expert", required = true) int nHead;
        @JsonProperty(value = "num_key_value_heads", required = true) int nKv;
        @JsonProperty(value = "head_dim", required = true) int dAtt;
        @JsonProperty(value = "num_mlp_experts", required = true) int nFfd;
        @JsonProperty(value = "expert_intermediate_size", required = true) int dFfd;
        @JsonProperty("hidden_act") Activation hiddenAct;
        @JsonProperty(value = "max_position_embeddings", required = true) int maxPositions;
        @JsonProperty("rope_theta") double ropeTheta;
        @JsonProperty("rms_norm_eps") double rmsNormEps;
        @JsonProperty("tie_word_embeddings") boolean tieWordEmbeddings;
        @JsonProperty("router") RouterKind router;
        @JsonProperty("router_hidden_size") int routerHiddenSize;
        @JsonProperty("training_routing") TrainingRouting trainingRouting;
        @JsonProperty("training_top_k") int trainingTopK;
        @JsonProperty("aux_loss") AuxLoss auxLoss;
        @JsonProperty("aux_loss_weight_attention") double auxWeightAtt;
        @JsonProperty("aux_loss_weight_mlp") double auxWeightFfd;
    }

    /** The choices' JSON spelling, {@link ModelConfig.Choice#json()}, both ways. */
    private interface ChoiceSpelling {
        @JsonValue
        String json();
    }

    private static final ObjectMapper MAPPER = mapper();

    /** Key -> the builder property it binds, in file order: model_type (bound to none), then component order. */
    private static final Map<String, BeanPropertyDefinition> PROPERTIES = properties();

    private ConfigJson() {}

    private static ObjectMapper mapper() {
        return new ObjectMapper()
                .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
                .enable(SerializationFeature.INDENT_OUTPUT)
                .addMixIn(ModelConfig.Builder.class, Keys.class)
                .addMixIn(ModelConfig.Choice.class, ChoiceSpelling.class);
    }

    private static Map<String, BeanPropertyDefinition> properties() {
        Map<String, BeanPropertyDefinition> byField = new LinkedHashMap<>();
        for (BeanPropertyDefinition p : MAPPER.getDeserializationConfig()
                .introspect(MAPPER.constructType(ModelConfig.Builder.class)).findProperties()) {
            byField.put(p.getInternalName(), p);
        }
        Map<String, BeanPropertyDefinition> byKey = new LinkedHashMap<>();
        byKey.put(MODEL_TYPE_KEY, null);
        for (RecordComponent rc : ModelConfig.class.getRecordComponents()) {
            BeanPropertyDefinition p = byField.remove(rc.getName());
            if (p == null) throw new IllegalStateException("ModelConfig." + rc.getName() + " has no config.json key");
            byKey.put(p.getName(), p);
        }
        if (!byField.isEmpty()) throw new IllegalStateException("config.json keys without a component: " + byField.keySet());
        return byKey;
    }

    /** The {@code config.json} keys in file order. */
    public static List<String> keys() {
        return List.copyOf(PROPERTIES.keySet());
    }

    /** {@code config} as the indented text of {@code config.json}: one flat object with every key. */
    public static String toJson(ModelConfig config) {
        return toJson(config, null);
    }

    /**
     * {@link #toJson(ModelConfig)} of a checkpoint whose weights are stored as {@code quantization}
     * (Q8_0 or BF16; null: not quantized, as {@link #toJson(ModelConfig)}), which the last key,
     * {@value #QUANTIZATION}, says.
     */
    public static String toJson(ModelConfig config, MatVec.DType quantization) {
        if (quantization == MatVec.DType.F32) throw new IllegalArgumentException("f32 is no quantization");
        ObjectNode fields = MAPPER.valueToTree(config.toBuilder());
        ObjectNode o = MAPPER.createObjectNode();
        o.put(MODEL_TYPE_KEY, MODEL_TYPE);
        for (String key : PROPERTIES.keySet()) {
            if (!key.equals(MODEL_TYPE_KEY)) o.set(key, fields.get(key));
        }
        if (quantization != null) o.put(QUANTIZATION, quantization.name().toLowerCase(Locale.ROOT));
        try {
            return MAPPER.writeValueAsString(o);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e); // cannot happen for an ObjectNode of scalars
        }
    }

    /**
     * Parses and validates a {@code config.json} text. Throws {@link IllegalArgumentException}
     * naming the key for: an unknown key, a missing required key, a value of the wrong type, a
     * duplicate key; and the {@link ModelConfig#validate()} messages for bad values.
     */
    public static ModelConfig fromJson(String json) {
        return read(json).config();
    }

    /**
     * {@link #fromJson} and the {@value #QUANTIZATION} key: absent (null), {@code "q8_0"} or
     * {@code "bf16"}; another value (a type this engine does not know, or {@code "f32"}) is an
     * IllegalArgumentException naming the key.
     */
    public static Stored read(String json) {
        JsonNode root;
        try {
            root = MAPPER.readTree(json);
        } catch (JsonProcessingException ex) {
            throw new IllegalArgumentException("config is not valid JSON: " + ex.getOriginalMessage());
        }
        if (root == null || !root.isObject()) {
            throw new IllegalArgumentException("config must be one JSON object, got "
                    + (root == null ? "nothing" : root.getNodeType().toString().toLowerCase()));
        }
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String key = it.next();
            if (!key.equals(QUANTIZATION)) type(key);
        }
        for (var e : PROPERTIES.entrySet()) {
            boolean required = e.getKey().equals(MODEL_TYPE_KEY) || e.getValue().isRequired();
            if (required && !root.has(e.getKey())) {
                throw new IllegalArgumentException("missing required config key \"" + e.getKey() + "\"");
            }
        }
        ModelConfig.Builder b = ModelConfig.builder();
        for (String key : PROPERTIES.keySet()) {
            if (root.has(key)) set(b, key, root.get(key));
        }
        return new Stored(b.build().validate(), quantization(root.get(QUANTIZATION)));
    }

    private static MatVec.DType quantization(JsonNode v) {
        if (v == null) return null;
        String known = "\"q8_0\" or \"bf16\"";
        if (!v.isTextual()) throw new IllegalArgumentException(QUANTIZATION + " must be " + known + ", got " + describe(v));
        return switch (v.textValue()) {
            case "q8_0" -> MatVec.DType.Q8_0;
            case "bf16" -> MatVec.DType.BF16;
            case "f32" -> throw new IllegalArgumentException(QUANTIZATION + " \"f32\" is no quantization: an fp32 checkpoint has no "
                    + QUANTIZATION + " key");
            default -> throw new IllegalArgumentException(QUANTIZATION + " must be " + known + " (the types 'dsmoe quantize' writes), got "
                    + describe(v) + ", which this dsmoe does not know");
        };
    }

    /**
     * A copy of {@code config} with one key set by its {@code config.json} name, from a value
     * written as on a command line ({@code "16"}, {@code "3.5e-4"}, {@code "true"}, {@code "mlp"});
     * not validated. Errors name the key (unknown key, wrong type).
     */
    public static ModelConfig with(ModelConfig config, String key, String value) {
        ModelConfig.Builder b = config.toBuilder();
        set(b, key, fromText(type(key), value));
        return b.build();
    }

    /** A command-line value as the JSON value it stands for; text that is none stays text (and fails in {@link #set}). */
    private static JsonNode fromText(Class<?> type, String text) {
        String v = text.trim();
        try {
            if (type == int.class) return IntNode.valueOf(Integer.parseInt(v));
            if (type == double.class) return DoubleNode.valueOf(Double.parseDouble(v));
        } catch (NumberFormatException e) {
            return TextNode.valueOf(text);
        }
        if (type == boolean.class) {
            return v.equals("true") || v.equals("false") ? BooleanNode.valueOf(v.equals("true")) : TextNode.valueOf(text);
        }
        return TextNode.valueOf(v);
    }

    /** The Java type {@code key} binds to; an unknown key is an error listing the known ones. */
    private static Class<?> type(String key) {
        if (!PROPERTIES.containsKey(key)) {
            throw new IllegalArgumentException("unknown config key \"" + key + "\"; known keys: "
                    + String.join(", ", PROPERTIES.keySet()) + " (and " + QUANTIZATION + " in a quantized checkpoint)");
        }
        return key.equals(MODEL_TYPE_KEY) ? String.class : PROPERTIES.get(key).getRawPrimaryType();
    }

    /** Binds one key's JSON value onto the builder, or says what is wrong with it. */
    private static void set(ModelConfig.Builder b, String key, JsonNode v) {
        Class<?> type = type(key);
        boolean fits = type == int.class ? v.isIntegralNumber() && v.canConvertToInt()
                : type == double.class ? v.isNumber()
                : type == boolean.class ? v.isBoolean()
                : v.isTextual();
        if (!fits) {
            String expected = type == int.class ? "an integer" : type == double.class ? "a number"
                    : type == boolean.class ? "true or false" : "a string";
            throw new IllegalArgumentException(key + " must be " + expected + ", got " + describe(v));
        }
        if (key.equals(MODEL_TYPE_KEY)) {
            if (!v.textValue().equals(MODEL_TYPE)) {
                throw new IllegalArgumentException("model_type must be \"" + MODEL_TYPE + "\", got " + describe(v));
            }
            return;
        }
        try {
            MAPPER.readerForUpdating(b).readValue((JsonNode) MAPPER.createObjectNode().set(key, v));
        } catch (IOException e) { // only a choice's spelling is left to be wrong
            if (!type.isEnum()) throw new IllegalStateException("cannot bind " + key, e);
            throw new IllegalArgumentException(key + " must be one of " + Arrays.stream(type.getEnumConstants())
                    .map(c -> "\"" + ((ModelConfig.Choice) c).json() + "\"").collect(Collectors.joining(", "))
                    + "; got " + describe(v));
        }
    }

    private static String describe(JsonNode v) {
        return v.isTextual() ? "\"" + v.textValue() + "\"" : v.toString();
    }
}
