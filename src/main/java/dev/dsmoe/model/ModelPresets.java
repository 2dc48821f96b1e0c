package dev.dsmoe.model;

import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The named model presets (METHOD 7's small models, METHOD 2.5's paper shapes) and the paper's
 * size-matched families (METHOD 2.5): {@code train --preset}, {@code --family} and {@code --experts}.
 *
 * <p>The paper's MoE presets ({@code smoe-1b}, {@code dsmoe-1b/3b/6b}) use MLP routers of width
 * 512 (1B, 6B) and 768 (3B): the paper does not state its router, but its totals (METHOD 2.5)
 * exceed the dense model's by far more than linear routers hold (DS-MoE-1B: +50M against
 * +2.4M), and MLP routers of those widths reproduce all four MoE totals within 0.3%.
 */
public final class ModelPresets {

    /** Paper MI-loss weights for the 1B models (METHOD 3), used by the small presets too. */
    public static final double MI_ALPHA_ATT_1B = 3.5e-4;
    public static final double MI_ALPHA_FFD_1B = 6.3e-4;
    /** Switch-loss weight of the SMoE presets (Fedus et al.'s 0.01). */
    public static final double SWITCH_ALPHA = 0.01;
    /** The SMoE baseline routes each token to its top 2 MLP experts. */
    static final int SMOE_TOP_K = 2;

    private ModelPresets() {}

    /**
     * The three model families of METHOD 2.5, with the expert counts of their small presets
     * ({@code N_att}, {@code N_ffd}), which {@code --family} uses when {@code --experts} is not given.
     */
    public enum Family {
        DENSE(1, 1), SMOE(1, 8), DSMOE(4, 16);

        private final int nAtt;
        private final int nFfd;

        Family(int nAtt, int nFfd) {
            this.nAtt = nAtt;
            this.nFfd = nFfd;
        }

        /** Attention experts of this family's small preset. */
        public int nAtt() {
            return nAtt;
        }

        /** MLP experts of this family's small preset. */
        public int nFfd() {
            return nFfd;
        }

        /** Parses "dense", "smoe" or "dsmoe" (case-insensitive). */
        public static Family parse(String name) {
            for (Family f : values()) {
                if (f.name().equalsIgnoreCase(name)) return f;
            }
            throw new IllegalArgumentException("unknown model family \"" + name
                    + "\"; known: dense, smoe, dsmoe");
        }
    }

    // ------------------------------------------------------------------ size matching

    /** {@link #sizeMatched(ModelConfig, Family, int, int, double)} with an MLP width multiplier of 1. */
    public static ModelConfig sizeMatched(ModelConfig reference, Family family, int nAtt, int nFfd) {
        return sizeMatched(reference, family, nAtt, nFfd, 1.0);
    }

    /**
     * The config of {@code family} matched to {@code reference} by the paper's rule (METHOD 2.5).
     * The reference's query heads {@code H = N_att·N_head} and MLP width {@code W = N_ffd·D_ffd}
     * are what is matched, so any family can be the reference; everything else (D_emb, L, N_kv,
     * D_att, vocabulary, context, norms, router kind) is copied.
     * <ul>
     *   <li>DENSE: N_att = N_ffd = 1, N_head = H, D_ffd = W * mlpWidthMultiplier; dense routing,
     *       no aux loss ({@code nAtt}, {@code nFfd} must be 1).</li>
     *   <li>SMOE: N_att = 1, N_head = H, {@code nFfd} experts of D_ffd = W * mlpWidthMultiplier /
     *       nFfd; top-2 training routing, switch loss with weight {@link #SWITCH_ALPHA} on the MLP
     *       ({@code nAtt} must be 1).</li>
     *   <li>DSMOE: {@code nAtt} experts of N_head = H / nAtt, {@code nFfd} experts of D_ffd =
     *       W * mlpWidthMultiplier / nFfd; dense routing, MI loss with the paper's 1B weights
     *       {@link #MI_ALPHA_ATT_1B}, {@link #MI_ALPHA_FFD_1B}.</li>
     * </ul>
     * The result is validated; a split that does not divide evenly is an error saying so.
     */
    public static ModelConfig sizeMatched(ModelConfig reference, Family family, int nAtt, int nFfd,
            double mlpWidthMultiplier) {
        int heads = reference.totalQueryHeads();
        double widthD = reference.totalMlpWidth() * mlpWidthMultiplier;
        if (!(mlpWidthMultiplier > 0) || widthD != Math.rint(widthD) || widthD > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("MLP width " + reference.totalMlpWidth() + " x multiplier "
                    + mlpWidthMultiplier + " must be a positive whole number");
        }
        int width = (int) widthD;
        if (nAtt < 1 || nFfd < 1) {
            throw new IllegalArgumentException("expert counts must be positive, got num_attention_experts "
                    + nAtt + " and num_mlp_experts " + nFfd);
        }
        if (family != Family.DSMOE && nAtt != 1) {
            throw new IllegalArgumentException(family.name().toLowerCase(Locale.ROOT)
                    + " has num_attention_experts = 1 (got " + nAtt + ")");
        }
        if (family == Family.DENSE && nFfd != 1) {
            throw new IllegalArgumentException("dense has num_mlp_experts = 1 (got " + nFfd + ")");
        }
        if (heads % nAtt != 0) {
            throw new IllegalArgumentException("the reference's " + heads
                    + " query heads do not split evenly over num_attention_experts (" + nAtt + ")");
        }
        if (width % nFfd != 0) {
            throw new IllegalArgumentException("the MLP width " + width
                    + " does not split evenly over num_mlp_experts (" + nFfd + ")");
        }
        ModelConfig.Builder b = reference.toBuilder().nAtt(nAtt).nHead(heads / nAtt).nFfd(nFfd).dFfd(width / nFfd)
                .trainingTopK(SMOE_TOP_K);
        switch (family) {
            case DENSE -> b.trainingRouting(TrainingRouting.DENSE).auxLoss(AuxLoss.NONE).auxWeightAtt(0).auxWeightFfd(0);
            case SMOE -> b.trainingRouting(TrainingRouting.TOP_K).auxLoss(AuxLoss.SWITCH).auxWeightAtt(0)
                    .auxWeightFfd(SWITCH_ALPHA);
            case DSMOE -> b.trainingRouting(TrainingRouting.DENSE).auxLoss(AuxLoss.MI).auxWeightAtt(MI_ALPHA_ATT_1B)
                    .auxWeightFfd(MI_ALPHA_FFD_1B);
        }
        return b.build().validate();
    }

    // ------------------------------------------------------------------ presets

    private static final Map<String, ModelConfig> PRESETS = buildPresets();

    private static ModelConfig dense(int vocab, int d, int layers, int heads, int nKv, int dAtt, int width,
            int context) {
        return ModelConfig.builder().vocabSize(vocab).dEmb(d).numLayers(layers).nAtt(1).nHead(heads).nKv(nKv).dAtt(dAtt)
                .nFfd(1).dFfd(width).maxPositions(context).auxLoss(AuxLoss.NONE).build().validate();
    }

    private static Map<String, ModelConfig> buildPresets() {
        Map<String, ModelConfig> p = new LinkedHashMap<>();
        // METHOD 7: trained in minutes on 2 cores; vocabulary 8192, context 256.
        ModelConfig small = dense(8192, 256, 4, 8, 2, 32, 1024, 256);
        p.put("dense-small", small);
        p.put("smoe-small", sizeMatched(small, Family.SMOE, Family.SMOE.nAtt(), Family.SMOE.nFfd()));
        p.put("dsmoe-small", sizeMatched(small, Family.DSMOE, Family.DSMOE.nAtt(), Family.DSMOE.nFfd()));
        // METHOD 2.5 paper shapes, vocabulary 32000, context 2048.
        ModelConfig b1 = dense(32000, 2048, 24, 32, 2, 64, 8192, 2048);
        p.put("dense-1b", b1);
        p.put("smoe-1b", paperRouter(sizeMatched(b1, Family.SMOE, 1, 8), 512));
        p.put("dsmoe-1b", paperRouter(sizeMatched(b1, Family.DSMOE, 16, 32), 512));
        ModelConfig b3 = dense(32000, 3072, 28, 32, 4, 96, 12288, 2048);
        p.put("dense-3b", b3);
        p.put("dsmoe-3b", paperRouter(withMi(sizeMatched(b3, Family.DSMOE, 8, 32), 2e-4, 4e-4), 768));
        ModelConfig b6 = dense(32000, 4096, 36, 32, 4, 128, 16384, 2048);
        p.put("dense-6b", b6);
        p.put("dsmoe-6b", paperRouter(withMi(sizeMatched(b6, Family.DSMOE, 8, 32), 2e-4, 2e-4), 512));
        return p;
    }

    /** The paper's MI weights (alpha_att, alpha_ffd) of the 3B and 6B models (METHOD 3). */
    private static ModelConfig withMi(ModelConfig c, double alphaAtt, double alphaFfd) {
        return c.toBuilder().auxLoss(AuxLoss.MI).auxWeightAtt(alphaAtt).auxWeightFfd(alphaFfd).build();
    }

    /**
     * The paper's MoE models carry MLP routers: their totals (METHOD 2.5) are only reached with
     * a hidden layer of this width in every router (see the class comment).
     */
    private static ModelConfig paperRouter(ModelConfig c, int hidden) {
        return c.toBuilder().router(RouterKind.MLP).routerHiddenSize(hidden).build().validate();
    }

    /** The preset names, in a stable order (small first, then by size). */
    public static List<String> names() {
        return List.copyOf(PRESETS.keySet());
    }

    /** A named preset (METHOD 7 and 2.5); an unknown name is an error listing the known ones. */
    public static ModelConfig get(String name) {
        ModelConfig c = PRESETS.get(name);
        if (c == null) {
            throw new IllegalArgumentException("unknown model preset \"" + name + "\"; known presets: "
                    + String.join(", ", PRESETS.keySet()));
        }
        return c;
    }
}
