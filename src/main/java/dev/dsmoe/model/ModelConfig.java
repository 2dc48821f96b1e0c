package dev.dsmoe.model;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * The shape and training settings of one Dense, SMoE or DS-MoE transformer: exactly the keys of
 * {@code config.json} (docs/ARCHITECTURE.md, "Files a user sees"; read and written by
 * {@code io.ConfigJson}). Immutable; {@link #toBuilder()} makes changed copies without validating,
 * so several changes can be made before one {@link #validate()}. Presets and size-matched
 * families are {@link ModelPresets}; parameter counts come from the layout, {@link ParamCounts}.
 *
 * <p>Components, their {@code config.json} keys and symbols (defaults of optional keys, which
 * {@link #builder()} starts from, in brackets):
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
 *
 * <p>Validation rules ({@link #validationErrors()}), each with its own message:
 * <ul>
 *   <li>every size is positive; {@code D_att} is even (RoPE rotates pairs);
 *       {@code max_position_embeddings <= }{@link #MAX_POSITIONS} (the RoPE tables and a full
 *       KV cache are sized by it) and {@code L <= }{@link #MAX_LAYERS};</li>
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
 *       the other two {@code > 0}; projection heights ({@code N_head·D_att}, {@code N_kv·D_att},
 *       {@code N_att·N_head·D_att}, {@code N_ffd·D_ffd}) fit in an {@code int}.</li>
 * </ul>
 * An aux weight for a layer type without a router (N = 1) is allowed and simply unused.
 *
 * <p>The MLP router ({@code router "mlp"}) is ModuleFormer's {@code Linear(D_emb, H) -> act ->
 * Linear(H, N)} with {@code H = router_hidden_size}, no biases, the activation being
 * {@code hidden_act}; see {@link ParamLayout} for its tensors. {@code router_hidden_size} is
 * unused by the linear router.
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

    /** The most positions, 2^20 (long-context Llama models have 131,072): RoPE tables and a full KV cache hold them all. */
    public static final int MAX_POSITIONS = 1 << 20;

    /** The most layers, 2^16 (large models have about a hundred): past it no model fits a parameter buffer anyway. */
    public static final int MAX_LAYERS = 1 << 16;

    /** A setting spelled in {@code config.json} as its constant's name in lower case ("gelu_tanh", "top_k"). */
    public sealed interface Choice permits Activation, RouterKind, TrainingRouting, AuxLoss {
        String name();

        /** The {@code config.json} spelling. */
        default String json() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** {@code hidden_act}, the activation of the MLP experts and router: GELU's tanh approximation (default) or exact {@code x·Φ(x)}. */
    public enum Activation implements Choice { GELU_TANH, GELU }

    /** {@code router}: a bias-free {@code Linear(D_emb, N)} (default) or ModuleFormer's MLP (class comment). */
    public enum RouterKind implements Choice { LINEAR, MLP }

    /** {@code training_routing}: all experts, router-weighted (DS-MoE; default), or the top {@code training_top_k} MLP experts (SMoE). */
    public enum TrainingRouting implements Choice { DENSE, TOP_K }

    /** {@code aux_loss} (METHOD 3): mutual information per router (default), Switch's {@code N·Σ_i f_i·P_i}, or none. */
    public enum AuxLoss implements Choice { MI, SWITCH, NONE }

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
