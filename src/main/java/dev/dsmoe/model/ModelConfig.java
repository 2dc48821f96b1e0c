package dev.dsmoe.model;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.stream.Collectors;

/**
 * The shape and training settings of one Dense, SMoE or DS-MoE transformer: exactly the keys of
 * {@code config.json} (docs/ARCHITECTURE.md, "Files a user sees"). Immutable; {@link #toBuilder()}
 * makes changed copies without validating, so several changes can be made before one
 * {@link #validate()}. {@link #fromJson(String)} returns validated configs. Presets and
 * size-matched families are {@link ModelPresets}; parameter counts come from the layout,
 * {@link ParamCounts}.
 *
 * <p>Components and their {@code config.json} keys (defaults of optional keys in brackets):
 * <pre>
 * vocabSize          vocab_size                  V
 * dEmb               hidden_size                 D_emb
 * numLayers          num_hidden_layers           L
 * nAtt               num_attention_experts       N_att
 * nHead              num_heads_per_expert        N_head (query heads per attention expert)
 * nKv                num_key_value_heads         N_kv (shared by all attention experts)
 * dAtt               head_dim                    D_att
 * nFfd               num_mlp_experts             N_ffd
 * dFfd               expert_intermediate_size    D_ffd
 * hiddenAct          hidden_act                  ["gelu_tanh"] | "gelu" (exact erf)
 * maxPositions       max_position_embeddings
 * ropeTheta          rope_theta                  [10000.0]
 * rmsNormEps         rms_norm_eps                [1e-5]
 * tieWordEmbeddings  tie_word_embeddings         [true]
 * router             router                      ["linear"] | "mlp"
 * routerHiddenSize   router_hidden_size          [256] (hidden width of the MLP router)
 * trainingRouting    training_routing            ["dense"] | "top_k"
 * trainingTopK       training_top_k              [2]
 * auxLoss            aux_loss                    ["mi"] | "switch" | "none"
 * auxWeightAtt       aux_loss_weight_attention   [0.0]  (alpha_att)
 * auxWeightFfd       aux_loss_weight_mlp         [0.0]  (alpha_ffd)
 * </pre>
 * plus {@code model_type}, which is required in a file and must be {@code "dsmoe"}.
 *
 * <p>Validation rules ({@link #validationErrors()}), each with its own message:
 * <ul>
 *   <li>every size is positive; {@code head_dim} is even (RoPE rotates pairs);
 *       {@code max_position_embeddings <= }{@link #MAX_POSITIONS} (the RoPE tables and a full
 *       KV cache are sized by it) and {@code num_hidden_layers <= }{@link #MAX_LAYERS};</li>
 *   <li>GQA grouping: query head j of every attention expert reads KV head
 *       {@code floor(j*N_kv/N_head)} (METHOD 2.3), so {@code N_kv <= N_head} (a larger N_kv would
 *       leave KV heads that no query head of any expert reads) and {@code N_head % N_kv == 0}
 *       (every KV head serves the same number of query heads);</li>
 *   <li>{@code training_routing "top_k"} is the SMoE baseline: it routes MLP experts only and
 *       requires {@code N_att = 1} and {@code 1 <= training_top_k <= N_ffd};
 *       {@code training_top_k >= 1} always;</li>
 *   <li>{@code aux_loss "switch"} requires {@code training_routing "top_k"} (it counts the tokens
 *       routed to each expert; with dense routing it is a constant);</li>
 *   <li>aux weights, {@code rope_theta} and {@code rms_norm_eps} are finite; weights {@code >= 0},
 *       the other two {@code > 0}; projection heights fit in an {@code int}.</li>
 * </ul>
 * An aux weight for a layer type without a router (N = 1) is allowed and simply unused.
 *
 * <p>The MLP router ({@code router "mlp"}) is ModuleFormer's {@code Linear(d, H) -> act ->
 * Linear(H, N)} with {@code H = router_hidden_size} (ModuleFormer's 256 by default), no biases,
 * the activation being {@code hidden_act}; its tensors are {@code ...router.0.weight [H, d]} and
 * {@code ...router.2.weight [N, H]} (PyTorch {@code nn.Sequential} indices). See
 * {@link ParamLayout}. {@code router_hidden_size} is unused by the linear router.
 */
public record ModelConfig(
        int vocabSize,
        int dEmb,
        int numLayers,
        int nAtt,
        int nHead,
        int nKv,
        int dAtt,
        int nFfd,
        int dFfd,
        Activation hiddenAct,
        int maxPositions,
        double ropeTheta,
        double rmsNormEps,
        boolean tieWordEmbeddings,
        RouterKind router,
        int routerHiddenSize,
        TrainingRouting trainingRouting,
        int trainingTopK,
        AuxLoss auxLoss,
        double auxWeightAtt,
        double auxWeightFfd) {

    /** The {@code model_type} of every config this engine reads or writes. */
    public static final String MODEL_TYPE = "dsmoe";

    /** Default {@code router_hidden_size}: the MLP router's hidden width in ModuleFormer. */
    public static final int DEFAULT_ROUTER_HIDDEN_SIZE = 256;

    /**
     * The most positions a model may have, 2^20 (1,048,576; long-context Llama models have
     * 131,072): the RoPE tables and a full-context KV cache are allocated for all of them.
     */
    public static final int MAX_POSITIONS = 1 << 20;

    /**
     * The most layers, 2^16 (large models have about a hundred): past it no model fits a
     * parameter buffer anyway, and the per-layer structures would be built before that shows.
     */
    public static final int MAX_LAYERS = 1 << 16;

    /** Default {@code rope_theta}. */
    public static final double DEFAULT_ROPE_THETA = 10000.0;
    /** Default {@code rms_norm_eps}. */
    public static final double DEFAULT_RMS_NORM_EPS = 1e-5;
    /** Default {@code training_top_k}. */
    public static final int DEFAULT_TRAINING_TOP_K = 2;

    /** {@code hidden_act}: the activation of the MLP experts (and of the MLP router). */
    public enum Activation {
        /** Tanh approximation of GELU (project default). */
        GELU_TANH("gelu_tanh"),
        /** Exact GELU, {@code x * Phi(x)} with erf. */
        GELU("gelu");

        private final String json;

        Activation(String json) {
            this.json = json;
        }

        /** The {@code config.json} spelling. */
        public String json() {
            return json;
        }
    }

    /** {@code router}: how router logits are computed from a token's hidden state. */
    public enum RouterKind {
        /** One bias-free {@code Linear(d, N)} (project default). */
        LINEAR("linear"),
        /** ModuleFormer's {@code Linear(d, H) -> act -> Linear(H, N)}, bias-free, H = router_hidden_size. */
        MLP("mlp");

        private final String json;

        RouterKind(String json) {
            this.json = json;
        }

        public String json() {
            return json;
        }
    }

    /** {@code training_routing}: which experts compute a token during training. */
    public enum TrainingRouting {
        /** All experts, router-weighted sum (DS-MoE, and trivially Dense). */
        DENSE("dense"),
        /** The top {@code training_top_k} MLP experts only (SMoE baseline). */
        TOP_K("top_k");

        private final String json;

        TrainingRouting(String json) {
            this.json = json;
        }

        public String json() {
            return json;
        }
    }

    /** {@code aux_loss}: the router loss added to the LM loss (METHOD 3). */
    public enum AuxLoss {
        /** Mutual-information loss, per router, summed over layers. */
        MI("mi"),
        /** Switch load-balancing loss {@code N * sum_i f_i * P_i}. */
        SWITCH("switch"),
        /** No auxiliary loss. */
        NONE("none");

        private final String json;

        AuxLoss(String json) {
            this.json = json;
        }

        public String json() {
            return json;
        }
    }

    /** Null checks only; value checks are in {@link #validate()}. */
    public ModelConfig {
        Objects.requireNonNull(hiddenAct, "hidden_act");
        Objects.requireNonNull(router, "router");
        Objects.requireNonNull(trainingRouting, "training_routing");
        Objects.requireNonNull(auxLoss, "aux_loss");
    }

    /** Query heads over all attention experts, {@code N_att·N_head}. */
    public int totalQueryHeads() {
        return nAtt * nHead;
    }

    /** MLP width over all experts, {@code N_ffd·D_ffd}. */
    public int totalMlpWidth() {
        return nFfd * dFfd;
    }

    // ------------------------------------------------------------------ validation

    /** Every problem with this config, one message each, in key order; empty if valid. */
    public List<String> validationErrors() {
        List<String> e = new ArrayList<>();
        positive(e, "vocab_size", vocabSize);
        positive(e, "hidden_size", dEmb);
        positive(e, "num_hidden_layers", numLayers);
        positive(e, "num_attention_experts", nAtt);
        positive(e, "num_heads_per_expert", nHead);
        positive(e, "num_key_value_heads", nKv);
        positive(e, "head_dim", dAtt);
        positive(e, "num_mlp_experts", nFfd);
        positive(e, "expert_intermediate_size", dFfd);
        positive(e, "max_position_embeddings", maxPositions);
        positive(e, "router_hidden_size", routerHiddenSize);
        if (numLayers > MAX_LAYERS) e.add("num_hidden_layers (" + numLayers + ") must be at most " + MAX_LAYERS);
        if (maxPositions > MAX_POSITIONS) {
            e.add("max_position_embeddings (" + maxPositions + ") must be at most " + MAX_POSITIONS
                    + ": the RoPE tables and the KV cache are sized by it");
        }
        if (dAtt > 0 && dAtt % 2 != 0) {
            e.add("head_dim (" + dAtt + ") must be even: RoPE rotates pairs of dimensions");
        }
        if (nHead > 0 && nKv > 0) {
            if (nKv > nHead) {
                e.add("num_key_value_heads (" + nKv + ") must not exceed num_heads_per_expert (" + nHead
                        + "): query head j of every attention expert reads KV head floor(j*N_kv/N_head),"
                        + " so the other KV heads would never be read");
            } else if (nHead % nKv != 0) {
                e.add("num_heads_per_expert (" + nHead + ") must be a multiple of num_key_value_heads ("
                        + nKv + "): each KV head serves N_head/N_kv query heads of every attention expert");
            }
        }
        if (nHead > 0 && dAtt > 0 && (long) nHead * dAtt > Integer.MAX_VALUE) {
            e.add("num_heads_per_expert*head_dim (" + (long) nHead * dAtt + ") is too large");
        }
        if (nKv > 0 && dAtt > 0 && (long) nKv * dAtt > Integer.MAX_VALUE) {
            e.add("num_key_value_heads*head_dim (" + (long) nKv * dAtt + ") is too large");
        }
        // The dense training step works on all experts' query heads and MLP rows at once, in int.
        if (nAtt > 0 && nHead > 0 && dAtt > 0 && (long) nHead * dAtt <= Integer.MAX_VALUE
                && (long) nAtt * (nHead * dAtt) > Integer.MAX_VALUE) {
            e.add("num_attention_experts*num_heads_per_expert*head_dim (" + (long) nAtt * (nHead * dAtt) + ") is too large");
        }
        if (nFfd > 0 && dFfd > 0 && (long) nFfd * dFfd > Integer.MAX_VALUE) {
            e.add("num_mlp_experts*expert_intermediate_size (" + (long) nFfd * dFfd + ") is too large");
        }
        if (!(ropeTheta > 0) || Double.isInfinite(ropeTheta)) {
            e.add("rope_theta (" + ropeTheta + ") must be a finite number > 0");
        }
        if (!(rmsNormEps > 0) || Double.isInfinite(rmsNormEps)) {
            e.add("rms_norm_eps (" + rmsNormEps + ") must be a finite number > 0");
        }
        if (trainingTopK < 1) {
            e.add("training_top_k (" + trainingTopK + ") must be >= 1");
        }
        if (trainingRouting == TrainingRouting.TOP_K) {
            if (nAtt != 1) {
                e.add("training_routing \"top_k\" requires num_attention_experts = 1 (got " + nAtt
                        + "): top-k training routes MLP experts only, as in the SMoE baseline");
            }
            if (trainingTopK >= 1 && nFfd >= 1 && trainingTopK > nFfd) {
                e.add("training_top_k (" + trainingTopK + ") must be between 1 and num_mlp_experts ("
                        + nFfd + ") when training_routing is \"top_k\"");
            }
        }
        if (auxLoss == AuxLoss.SWITCH && trainingRouting != TrainingRouting.TOP_K) {
            e.add("aux_loss \"switch\" requires training_routing \"top_k\" (got \"" + trainingRouting.json()
                    + "\"): the switch loss counts the tokens routed to each expert");
        }
        nonNegative(e, "aux_loss_weight_attention", auxWeightAtt);
        nonNegative(e, "aux_loss_weight_mlp", auxWeightFfd);
        return e;
    }

    private static void positive(List<String> e, String key, int v) {
        if (v <= 0) e.add(key + " (" + v + ") must be positive");
    }

    private static void nonNegative(List<String> e, String key, double v) {
        if (!(v >= 0) || Double.isInfinite(v)) e.add(key + " (" + v + ") must be a finite number >= 0");
    }

    /**
     * Returns this config if it is valid; otherwise throws an {@link IllegalArgumentException}
     * whose message is every problem, joined by "; " (one line).
     */
    public ModelConfig validate() {
        List<String> e = validationErrors();
        if (!e.isEmpty()) throw new IllegalArgumentException(String.join("; ", e));
        return this;
    }

    // ------------------------------------------------------------------ JSON

    private enum Type { INT, DOUBLE, BOOLEAN, STRING }

    /** The config.json keys in file order, their types and whether they may be omitted. */
    private enum Key {
        MODEL_TYPE("model_type", Type.STRING, true),
        VOCAB_SIZE("vocab_size", Type.INT, true),
        HIDDEN_SIZE("hidden_size", Type.INT, true),
        NUM_HIDDEN_LAYERS("num_hidden_layers", Type.INT, true),
        NUM_ATTENTION_EXPERTS("num_attention_experts", Type.INT, true),
        NUM_HEADS_PER_EXPERT("num_heads_per_expert", Type.INT, true),
        NUM_KEY_VALUE_HEADS("num_key_value_heads", Type.INT, true),
        HEAD_DIM("head_dim", Type.INT, true),
        NUM_MLP_EXPERTS("num_mlp_experts", Type.INT, true),
        EXPERT_INTERMEDIATE_SIZE("expert_intermediate_size", Type.INT, true),
        HIDDEN_ACT("hidden_act", Type.STRING, false),
        MAX_POSITION_EMBEDDINGS("max_position_embeddings", Type.INT, true),
        ROPE_THETA("rope_theta", Type.DOUBLE, false),
        RMS_NORM_EPS("rms_norm_eps", Type.DOUBLE, false),
        TIE_WORD_EMBEDDINGS("tie_word_embeddings", Type.BOOLEAN, false),
        ROUTER("router", Type.STRING, false),
        ROUTER_HIDDEN_SIZE("router_hidden_size", Type.INT, false),
        TRAINING_ROUTING("training_routing", Type.STRING, false),
        TRAINING_TOP_K("training_top_k", Type.INT, false),
        AUX_LOSS("aux_loss", Type.STRING, false),
        AUX_LOSS_WEIGHT_ATTENTION("aux_loss_weight_attention", Type.DOUBLE, false),
        AUX_LOSS_WEIGHT_MLP("aux_loss_weight_mlp", Type.DOUBLE, false);

        final String json;
        final Type type;
        final boolean required;

        Key(String json, Type type, boolean required) {
            this.json = json;
            this.type = type;
            this.required = required;
        }

        static final Map<String, Key> BY_JSON = new LinkedHashMap<>();

        static {
            for (Key k : values()) BY_JSON.put(k.json, k);
        }
    }

    private static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(SerializationFeature.INDENT_OUTPUT);

    /** The {@code config.json} keys in file order. */
    public static List<String> jsonKeys() {
        return Arrays.stream(Key.values()).map(k -> k.json).toList();
    }

    /** This config as one flat JSON object with every key, in {@link #jsonKeys()} order. */
    public ObjectNode toJsonNode() {
        ObjectNode o = MAPPER.createObjectNode();
        o.put("model_type", MODEL_TYPE);
        o.put("vocab_size", vocabSize);
        o.put("hidden_size", dEmb);
        o.put("num_hidden_layers", numLayers);
        o.put("num_attention_experts", nAtt);
        o.put("num_heads_per_expert", nHead);
        o.put("num_key_value_heads", nKv);
        o.put("head_dim", dAtt);
        o.put("num_mlp_experts", nFfd);
        o.put("expert_intermediate_size", dFfd);
        o.put("hidden_act", hiddenAct.json());
        o.put("max_position_embeddings", maxPositions);
        o.put("rope_theta", ropeTheta);
        o.put("rms_norm_eps", rmsNormEps);
        o.put("tie_word_embeddings", tieWordEmbeddings);
        o.put("router", router.json());
        o.put("router_hidden_size", routerHiddenSize);
        o.put("training_routing", trainingRouting.json());
        o.put("training_top_k", trainingTopK);
        o.put("aux_loss", auxLoss.json());
        o.put("aux_loss_weight_attention", auxWeightAtt);
        o.put("aux_loss_weight_mlp", auxWeightFfd);
        return o;
    }

    /** {@link #toJsonNode()} as indented JSON text (the content of {@code config.json}). */
    public String toJson() {
        try {
            return MAPPER.writeValueAsString(toJsonNode());
        } catch (JsonProcessingException ex) {
            throw new IllegalStateException(ex); // cannot happen for an ObjectNode of scalars
        }
    }

    /**
     * Parses and validates a {@code config.json} text. Throws {@link IllegalArgumentException}
     * naming the key for: an unknown key, a missing required key, a value of the wrong type, a
     * duplicate key; and the {@link #validate()} messages for bad values.
     */
    public static ModelConfig fromJson(String json) {
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
        return fromJsonNode((ObjectNode) root).validate();
    }

    /** Parses a config object without validating the values (types and keys are checked). */
    static ModelConfig fromJsonNode(ObjectNode o) {
        for (Iterator<String> it = o.fieldNames(); it.hasNext(); ) {
            String name = it.next();
            if (!Key.BY_JSON.containsKey(name)) {
                throw new IllegalArgumentException("unknown config key \"" + name + "\"; known keys: "
                        + String.join(", ", jsonKeys()));
            }
        }
        for (Key k : Key.values()) {
            if (k.required && !o.has(k.json)) {
                throw new IllegalArgumentException("missing required config key \"" + k.json + "\"");
            }
        }
        String modelType = str(o, Key.MODEL_TYPE, MODEL_TYPE);
        if (!MODEL_TYPE.equals(modelType)) {
            throw new IllegalArgumentException("model_type must be \"" + MODEL_TYPE + "\", got \"" + modelType + "\"");
        }
        return new ModelConfig(
                integer(o, Key.VOCAB_SIZE, 0),
                integer(o, Key.HIDDEN_SIZE, 0),
                integer(o, Key.NUM_HIDDEN_LAYERS, 0),
                integer(o, Key.NUM_ATTENTION_EXPERTS, 0),
                integer(o, Key.NUM_HEADS_PER_EXPERT, 0),
                integer(o, Key.NUM_KEY_VALUE_HEADS, 0),
                integer(o, Key.HEAD_DIM, 0),
                integer(o, Key.NUM_MLP_EXPERTS, 0),
                integer(o, Key.EXPERT_INTERMEDIATE_SIZE, 0),
                choice(Key.HIDDEN_ACT, str(o, Key.HIDDEN_ACT, Activation.GELU_TANH.json()), Activation.values()),
                integer(o, Key.MAX_POSITION_EMBEDDINGS, 0),
                dbl(o, Key.ROPE_THETA, DEFAULT_ROPE_THETA),
                dbl(o, Key.RMS_NORM_EPS, DEFAULT_RMS_NORM_EPS),
                bool(o, Key.TIE_WORD_EMBEDDINGS, true),
                choice(Key.ROUTER, str(o, Key.ROUTER, RouterKind.LINEAR.json()), RouterKind.values()),
                integer(o, Key.ROUTER_HIDDEN_SIZE, DEFAULT_ROUTER_HIDDEN_SIZE),
                choice(Key.TRAINING_ROUTING, str(o, Key.TRAINING_ROUTING, TrainingRouting.DENSE.json()),
                        TrainingRouting.values()),
                integer(o, Key.TRAINING_TOP_K, DEFAULT_TRAINING_TOP_K),
                choice(Key.AUX_LOSS, str(o, Key.AUX_LOSS, AuxLoss.MI.json()), AuxLoss.values()),
                dbl(o, Key.AUX_LOSS_WEIGHT_ATTENTION, 0.0),
                dbl(o, Key.AUX_LOSS_WEIGHT_MLP, 0.0));
    }

    private static String describe(JsonNode v) {
        return v.isTextual() ? "\"" + v.textValue() + "\"" : v.toString();
    }

    private static IllegalArgumentException wrongType(Key k, String expected, JsonNode v) {
        return new IllegalArgumentException(k.json + " must be " + expected + ", got " + describe(v));
    }

    private static int integer(ObjectNode o, Key k, int dflt) {
        JsonNode v = o.get(k.json);
        if (v == null) return dflt;
        if (!v.isIntegralNumber() || !v.canConvertToInt()) throw wrongType(k, "an integer", v);
        return v.intValue();
    }

    private static double dbl(ObjectNode o, Key k, double dflt) {
        JsonNode v = o.get(k.json);
        if (v == null) return dflt;
        if (!v.isNumber()) throw wrongType(k, "a number", v);
        return v.doubleValue();
    }

    private static boolean bool(ObjectNode o, Key k, boolean dflt) {
        JsonNode v = o.get(k.json);
        if (v == null) return dflt;
        if (!v.isBoolean()) throw wrongType(k, "true or false", v);
        return v.booleanValue();
    }

    private static String str(ObjectNode o, Key k, String dflt) {
        JsonNode v = o.get(k.json);
        if (v == null) return dflt;
        if (!v.isTextual()) throw wrongType(k, "a string", v);
        return v.textValue();
    }

    private static <E extends Enum<E>> E choice(Key k, String value, E[] options) {
        for (E e : options) {
            if (jsonName(e).equals(value)) return e;
        }
        throw new IllegalArgumentException(k.json + " must be one of "
                + Arrays.stream(options).map(e -> "\"" + jsonName(e) + "\"").collect(Collectors.joining(", "))
                + "; got \"" + value + "\"");
    }

    private static String jsonName(Enum<?> e) {
        return switch (e) {
            case Activation a -> a.json();
            case RouterKind r -> r.json();
            case TrainingRouting t -> t.json();
            case AuxLoss a -> a.json();
            default -> e.name().toLowerCase();
        };
    }

    /**
     * A copy with one key overridden by its {@code config.json} name and a value written as on
     * a command line ({@code "16"}, {@code "3.5e-4"}, {@code "true"}, {@code "mlp"}); not
     * validated. Errors name the key (unknown key, wrong type).
     */
    public ModelConfig with(String key, String value) {
        Key k = Key.BY_JSON.get(key);
        if (k == null) {
            throw new IllegalArgumentException("unknown config key \"" + key + "\"; known keys: "
                    + String.join(", ", jsonKeys()));
        }
        ObjectNode o = toJsonNode();
        String v = value.trim();
        switch (k.type) {
            case INT -> {
                try {
                    o.put(k.json, Integer.parseInt(v));
                } catch (NumberFormatException ex) {
                    throw new IllegalArgumentException(k.json + " must be an integer, got \"" + value + "\"");
                }
            }
            case DOUBLE -> {
                try {
                    o.put(k.json, Double.parseDouble(v));
                } catch (NumberFormatException ex) {
                    throw new IllegalArgumentException(k.json + " must be a number, got \"" + value + "\"");
                }
            }
            case BOOLEAN -> {
                if (!v.equals("true") && !v.equals("false")) {
                    throw new IllegalArgumentException(k.json + " must be true or false, got \"" + value + "\"");
                }
                o.put(k.json, Boolean.parseBoolean(v));
            }
            case STRING -> o.put(k.json, v);
        }
        return fromJsonNode(o);
    }

    // ------------------------------------------------------------------ copies

    /** A builder with the sizes at 0 (to be set) and every optional key at its default. */
    public static Builder builder() {
        return new Builder();
    }

    /** A builder holding this config, for a changed copy: {@code c.toBuilder().dEmb(16).numLayers(2).build()}. */
    public Builder toBuilder() {
        return new Builder().vocabSize(vocabSize).dEmb(dEmb).numLayers(numLayers).nAtt(nAtt).nHead(nHead).nKv(nKv)
                .dAtt(dAtt).nFfd(nFfd).dFfd(dFfd).hiddenAct(hiddenAct).maxPositions(maxPositions).ropeTheta(ropeTheta)
                .rmsNormEps(rmsNormEps).tieWordEmbeddings(tieWordEmbeddings).router(router)
                .routerHiddenSize(routerHiddenSize).trainingRouting(trainingRouting).trainingTopK(trainingTopK)
                .auxLoss(auxLoss).auxWeightAtt(auxWeightAtt).auxWeightFfd(auxWeightFfd);
    }

    /**
     * The components of a config being made; {@link #build()} does not validate. Fields are
     * declared in component order and start at the {@code config.json} defaults (the sizes at 0).
     */
    public static final class Builder {
        private int vocabSize, dEmb, numLayers, nAtt, nHead, nKv, dAtt, nFfd, dFfd;
        private Activation hiddenAct = Activation.GELU_TANH;
        private int maxPositions;
        private double ropeTheta = 10000.0;
        private double rmsNormEps = 1e-5;
        private boolean tieWordEmbeddings = true;
        private RouterKind router = RouterKind.LINEAR;
        private int routerHiddenSize = 256; // ModuleFormer's MLP router width
        private TrainingRouting trainingRouting = TrainingRouting.DENSE;
        private int trainingTopK = 2;
        private AuxLoss auxLoss = AuxLoss.MI;
        private double auxWeightAtt, auxWeightFfd;

        private Builder() {}

        public Builder vocabSize(int v) { vocabSize = v; return this; }
        public Builder dEmb(int v) { dEmb = v; return this; }
        public Builder numLayers(int v) { numLayers = v; return this; }
        public Builder nAtt(int v) { nAtt = v; return this; }
        public Builder nHead(int v) { nHead = v; return this; }
        public Builder nKv(int v) { nKv = v; return this; }
        public Builder dAtt(int v) { dAtt = v; return this; }
        public Builder nFfd(int v) { nFfd = v; return this; }
        public Builder dFfd(int v) { dFfd = v; return this; }
        public Builder hiddenAct(Activation v) { hiddenAct = v; return this; }
        public Builder maxPositions(int v) { maxPositions = v; return this; }
        public Builder ropeTheta(double v) { ropeTheta = v; return this; }
        public Builder rmsNormEps(double v) { rmsNormEps = v; return this; }
        public Builder tieWordEmbeddings(boolean v) { tieWordEmbeddings = v; return this; }
        public Builder router(RouterKind v) { router = v; return this; }
        public Builder routerHiddenSize(int v) { routerHiddenSize = v; return this; }
        public Builder trainingRouting(TrainingRouting v) { trainingRouting = v; return this; }
        public Builder trainingTopK(int v) { trainingTopK = v; return this; }
        public Builder auxLoss(AuxLoss v) { auxLoss = v; return this; }
        public Builder auxWeightAtt(double v) { auxWeightAtt = v; return this; }
        public Builder auxWeightFfd(double v) { auxWeightFfd = v; return this; }

        /** The config (not validated). */
        public ModelConfig build() {
            return new ModelConfig(vocabSize, dEmb, numLayers, nAtt, nHead, nKv, dAtt, nFfd, dFfd, hiddenAct,
                    maxPositions, ropeTheta, rmsNormEps, tieWordEmbeddings, router, routerHiddenSize, trainingRouting,
                    trainingTopK, auxLoss, auxWeightAtt, auxWeightFfd);
        }
    }
}
