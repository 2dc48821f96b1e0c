package dev.dsmoe.model;

import dev.dsmoe.model.ParamLayout.Role;
import dev.dsmoe.model.ParamLayout.Tensor;

/**
 * Parameter counts of a model, summed over the tensors of its {@link ParamLayout}: the layout
 * that allocates the parameters is also their count (as llm.c's {@code fill_in_parameter_sizes}
 * is both), so no count can disagree with the buffer.
 */
public final class ParamCounts {

    // The sums by role in fields, not an array: an InferenceModel holds its counts, and its
    // footprint (InferenceModel.footprint: the heap arrays loading allocates) has no part for them.
    private final long embedding, norm, router, attentionExperts, sharedKv, mlpExperts, lmHead;
    private final long total;
    private final int numLayers, nAtt, nFfd;

    public ParamCounts(ParamLayout layout) {
        long[] byRole = new long[Role.values().length];
        for (Tensor t : layout.tensors()) byRole[t.role().ordinal()] += t.numel();
        embedding = byRole[Role.EMBEDDING.ordinal()];
        norm = byRole[Role.NORM.ordinal()];
        router = byRole[Role.ROUTER.ordinal()];
        attentionExperts = byRole[Role.ATTENTION_EXPERT.ordinal()];
        sharedKv = byRole[Role.ATTENTION_SHARED_KV.ordinal()];
        mlpExperts = byRole[Role.MLP_EXPERT.ordinal()];
        lmHead = byRole[Role.LM_HEAD.ordinal()];
        total = layout.totalSize();
        ModelConfig c = layout.config();
        numLayers = c.numLayers();
        nAtt = c.nAtt();
        nFfd = c.nFfd();
    }

    /** The counts of {@code config}'s layout (the config is validated). */
    public static ParamCounts of(ModelConfig config) {
        return new ParamCounts(ParamLayout.of(config));
    }

    /** Every parameter: the size of the flat buffer. */
    public long total() {
        return total;
    }

    /** The parameters of all tensors of {@code role}, all layers together. */
    public long count(Role role) {
        return switch (role) {
            case EMBEDDING -> embedding;
            case NORM -> norm;
            case ROUTER -> router;
            case ATTENTION_EXPERT -> attentionExperts;
            case ATTENTION_SHARED_KV -> sharedKv;
            case MLP_EXPERT -> mlpExperts;
            case LM_HEAD -> lmHead;
        };
    }

    /** {@code embed_tokens} plus an untied {@code lm_head}. */
    public long embedding() {
        return count(Role.EMBEDDING) + count(Role.LM_HEAD);
    }

    /** Everything but {@code embed_tokens} and an untied {@code lm_head}: the paper's totals. */
    public long nonEmbedding() {
        return total - embedding();
    }

    /**
     * Non-embedding parameters a token reads when, per layer, {@code activeAtt} attention experts
     * and {@code activeFfd} MLP experts are computed (means over tokens and layers may be
     * fractional). Routers, norms and the shared KV projections are always counted.
     */
    public double activePerToken(double activeAtt, double activeFfd) {
        checkActive(activeAtt, activeFfd);
        return nonEmbedding() - numLayers * ((nAtt - activeAtt) * attentionExpert() + (nFfd - activeFfd) * mlpExpert());
    }

    /** "Active hidden": active expert parameters / all expert parameters (METHOD 5), in [0, 1]. */
    public double activeExpertFraction(double activeAtt, double activeFfd) {
        checkActive(activeAtt, activeFfd);
        return numLayers * (activeAtt * attentionExpert() + activeFfd * mlpExpert())
                / (double) (count(Role.ATTENTION_EXPERT) + count(Role.MLP_EXPERT));
    }

    /** One attention expert of one layer (its q_proj and o_proj slices). */
    private long attentionExpert() {
        return count(Role.ATTENTION_EXPERT) / ((long) numLayers * nAtt);
    }

    /** One MLP expert of one layer (its up_proj and down_proj slices). */
    private long mlpExpert() {
        return count(Role.MLP_EXPERT) / ((long) numLayers * nFfd);
    }

    private void checkActive(double activeAtt, double activeFfd) {
        if (!(activeAtt >= 1 && activeAtt <= nAtt)) {
            throw new IllegalArgumentException("active attention experts (" + activeAtt
                    + ") must be between 1 and num_attention_experts (" + nAtt + ")");
        }
        if (!(activeFfd >= 1 && activeFfd <= nFfd)) {
            throw new IllegalArgumentException("active MLP experts (" + activeFfd
                    + ") must be between 1 and num_mlp_experts (" + nFfd + ")");
        }
    }
}
