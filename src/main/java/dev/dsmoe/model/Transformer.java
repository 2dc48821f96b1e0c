package dev.dsmoe.model;

import dev.dsmoe.kernels.Attention;
import dev.dsmoe.kernels.CrossEntropy;
import dev.dsmoe.kernels.Embedding;
import dev.dsmoe.kernels.ExpertGroups;
import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.kernels.Gating;
import dev.dsmoe.kernels.Gelu;
import dev.dsmoe.kernels.Matmul;
import dev.dsmoe.kernels.RmsNorm;
import dev.dsmoe.kernels.Rope;
import dev.dsmoe.kernels.Routing;
import dev.dsmoe.kernels.Softmax;
import dev.dsmoe.model.Activations.RouterActs;
import dev.dsmoe.model.Activations.Scratch;

/**
 * The training forward and backward of the three model families (Dense, SMoE, DS-MoE), written
 * out layer by layer as in llm.c: no autograd, parameters and gradients in flat buffers named by
 * {@link ParamLayout}'s views, activations in one {@link Activations} arena. Each layer is a list
 * of kernel operations (a forward and a backward each: {@code Matmul}, {@code Routing},
 * {@code Gating}, {@code RmsNorm}, {@code Attention}, ...); the backward is the same list reversed.
 *
 * <p>Per layer (pre-norm): {@code x += MoA(RMSNorm(x))}, {@code x += MoE(RMSNorm(x))}; then
 * {@code logits = RMSNorm(x) · E_outᵀ}. Dense training computes all experts as stacked matrix
 * products: one query projection of width N_att·N_head·D_att, attention over the shared N_kv KV
 * heads, each expert's block scaled by its router probability S_i, then the output projection
 * (one product per expert, accumulated); likewise one up projection of width N_ffd·D_ffd, GELU,
 * gate scaling and the down projections. The SMoE baseline (training_routing top_k) runs the MLP
 * sparsely: each token's top-K experts, tokens grouped by expert, one product per expert, and
 * only the selected experts and gates receive gradient.
 *
 * <p>Loss: {@code L = L_LM + α_att Σ_layers L_aux(attention router) + α_ffd Σ_layers L_aux(MLP router)}
 * with L_aux the MI loss or the switch loss (METHOD section 3).
 */
public final class Transformer {

    /** Losses and router statistics of one forward. Entropies are means over the layers' routers (NaN if none). */
    public record Loss(double total, double lm, double auxAttention, double auxMlp,
                       double attnMarginalEntropy, double attnConditionalEntropy,
                       double mlpMarginalEntropy, double mlpConditionalEntropy) {}

    private final ModelConfig c;
    private final ParamLayout layout;
    private final float[] params;
    private final float[] grads;
    /** Named views of the parameters and of their gradients, built once. */
    private final ParamLayout.Weights<F32Tensor> weights, gradients;
    private final Matmul mm = Matmul.forTraining();
    private final Rope rope;
    private final int[] kvHeadOf;
    private final int d, hq, qW, kvW, dAtt, nKv, dFfd;
    private final float eps;
    private Activations acts;
    private int[] tokens;

    /**
     * @param params the flat parameter buffer of {@code layout} (not copied: training updates it in place)
     * @param grads  a buffer of the same size that backward accumulates into
     */
    public Transformer(ParamLayout layout, float[] params, float[] grads) {
        this.layout = layout;
        this.c = layout.config();
        if (params.length != layout.totalSize() || grads.length != layout.totalSize()) {
            throw new IllegalArgumentException("parameter and gradient buffers must have " + layout.totalSize()
                    + " floats, got " + params.length + " and " + grads.length);
        }
        if (c.hiddenAct() != ModelConfig.Activation.GELU_TANH) {
            throw new IllegalArgumentException("hidden_act '" + c.hiddenAct().json()
                    + "' is not implemented by the engine yet; use \"gelu_tanh\"");
        }
        this.params = params;
        this.grads = grads;
        this.weights = layout.views(params);
        this.gradients = layout.views(grads);
        this.d = c.dEmb();
        this.dAtt = c.dAtt();
        this.nKv = c.nKv();
        this.hq = c.totalQueryHeads();
        this.qW = hq * dAtt;
        this.kvW = nKv * dAtt;
        this.dFfd = c.dFfd();
        this.eps = (float) c.rmsNormEps();
        this.rope = new Rope(dAtt, c.maxPositions(), c.ropeTheta());
        this.kvHeadOf = Attention.moaMapping(c.nAtt(), c.nHead(), nKv);
    }

    /**
     * What an instance for {@code c} holds once it has run at (batch, seqLen), besides the
     * parameter and gradient buffers it is given: the activation arena, the step's token ids,
     * the head mapping and the RoPE tables.
     */
    public static Footprint footprint(ModelConfig c, int batch, int seqLen) {
        long tokens = (long) batch * seqLen, ropeFloats = Rope.tableFloats(c.dAtt(), c.maxPositions());
        return Activations.footprint(c, batch, seqLen)
                .plus(Footprint.heap("activations", Integer.BYTES * (tokens + c.totalQueryHeads()), tokens))
                .plus(Footprint.heap("RoPE tables", Float.BYTES * ropeFloats, ropeFloats / 2));
    }

    public ModelConfig config() { return c; }

    public ParamLayout layout() { return layout; }

    public float[] params() { return params; }

    public float[] grads() { return grads; }

    /** The arena for (batch, seqLen), reallocated only when the shape changes. */
    public Activations activations(int batch, int seqLen) {
        if (acts == null || acts.batch != batch || acts.seqLen != seqLen) {
            acts = new Activations(c, batch, seqLen);
            tokens = new int[batch * seqLen];
        }
        return acts;
    }

    // ------------------------------------------------------------------ forward

    /**
     * Forward over {@code [batch, seqLen]} token ids; with targets, also the losses. Logits of the
     * last call stay available through {@link #logits()} until the next backward.
     *
     * @param targets next-token ids, {@link CrossEntropy#IGNORE} to skip a position, or null
     */
    public Loss forward(int[] input, int[] targets, int batch, int seqLen) {
        return forward(input, targets, batch, seqLen, Float.NaN);
    }

    /**
     * The forward; with a finite {@code lossScale} (and targets) the cross-entropy also writes
     * its gradient over the logits, so that backward does not run the softmax a second time.
     */
    private Loss forward(int[] input, int[] targets, int batch, int seqLen, float lossScale) {
        Activations a = activations(batch, seqLen);
        int n = a.tokens;
        if (input.length < n || (targets != null && targets.length < n)) {
            throw new IllegalArgumentException("need " + n + " input and target ids, got " + input.length);
        }
        int vocab = c.vocabSize();
        for (int t = 0; t < n; t++) {
            if (input[t] < 0 || input[t] >= vocab) {
                throw new IllegalArgumentException("token id " + input[t] + " at position " + t
                        + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        System.arraycopy(input, 0, tokens, 0, n);
        Embedding.forward(weights.embedTokens(), tokens, 0, n, a.layers.length > 0 ? a.layers[0].resid : a.residFinal);

        for (int l = 0; l < a.layers.length; l++) {
            Activations.Layer L = a.layers[l];
            ParamLayout.Layer<F32Tensor> W = weights.layer(l);
            attentionForward(L, W, a.batch, a.seqLen, n);
            mlpForward(L, W, l + 1 < a.layers.length ? a.layers[l + 1].resid : a.residFinal, n);
        }
        RmsNorm.forward(a.residFinal, weights.finalNorm(), a.lnf, a.rstdf, n, eps);
        mm.forward(a.logits, a.lnf, n, weights.outputProjection(), false);
        float[] logits = a.logits.array();
        double lm = Double.NaN;
        if (targets != null) {
            lm = Float.isNaN(lossScale)
                    ? CrossEntropy.forward(logits, 0, targets, 0, n, vocab, CrossEntropy.IGNORE, a.losses, 0)
                    : CrossEntropy.forwardBackward(logits, 0, targets, 0, n, vocab, CrossEntropy.IGNORE, lossScale,
                            logits, 0, a.losses, 0);
        }
        return loss(lm, n);
    }

    /** The total loss from the LM loss and the routers' auxiliary losses, with the routers' mean entropies. */
    private Loss loss(double lm, int n) {
        double auxAtt = 0, auxMlp = 0, attMarg = 0, attCond = 0, mlpMarg = 0, mlpCond = 0;
        int attRouters = 0, mlpRouters = 0;
        for (Activations.Layer L : acts.layers) {
            if (L.attRouter != null) {
                auxAtt += auxLoss(L.attRouter, null, n);
                attMarg += L.attRouter.marginalEntropy;
                attCond += L.attRouter.conditionalEntropy;
                attRouters++;
            }
            if (L.mlpRouter != null) {
                auxMlp += auxLoss(L.mlpRouter, L.sparse, n);
                mlpMarg += L.mlpRouter.marginalEntropy;
                mlpCond += L.mlpRouter.conditionalEntropy;
                mlpRouters++;
            }
        }
        double total = lm + c.auxWeightAtt() * auxAtt + c.auxWeightFfd() * auxMlp;
        return new Loss(total, lm, auxAtt, auxMlp,
                attRouters > 0 ? attMarg / attRouters : Double.NaN, attRouters > 0 ? attCond / attRouters : Double.NaN,
                mlpRouters > 0 ? mlpMarg / mlpRouters : Double.NaN, mlpRouters > 0 ? mlpCond / mlpRouters : Double.NaN);
    }

    /** Logits {@code [B·T, V]} of the last forward. */
    public float[] logits() {
        return acts.logits.array();
    }

    /** Per-token losses {@code [B·T]} of the last forward with targets. */
    public float[] tokenLosses() {
        return acts.losses;
    }

    private double auxLoss(RouterActs r, Activations.SparseActs sparse, int n) {
        return RouterLoss.aux(c.auxLoss(), r.marginalEntropy, r.conditionalEntropy, r.pBar, sparse == null ? null : sparse.counts,
                n * c.trainingTopK(), r.experts);
    }

    private void attentionForward(Activations.Layer L, ParamLayout.Layer<F32Tensor> W, int batch, int seqLen, int n) {
        RmsNorm.forward(L.resid, W.inputNorm(), L.ln1, L.rstd1, n, eps);
        if (L.attRouter != null) routerForward(L.ln1, W.attnRouter(), L.attRouter, n);
        mm.forward(L.q, L.ln1, n, W.qProj(), false);
        mm.forward(L.k, L.ln1, n, W.kProj(), false);
        mm.forward(L.v, L.ln1, n, W.vProj(), false);
        rope.forward(L.q.array(), 0, qW, batch, seqLen, hq, 0);
        rope.forward(L.k.array(), 0, kvW, batch, seqLen, nKv, 0);
        Attention.forward(L.q.array(), 0, qW, L.k.array(), 0, L.v.array(), 0, kvW, L.att, 0, L.attOut.array(), 0, qW,
                acts.scratch.attention, 0, batch, seqLen, hq, nKv, dAtt, kvHeadOf);
        if (L.attRouter != null) Gating.forward(L.attOut, L.attRouter.acts.probs(), L.attGated, n);
        // residMid = resid + Σ_i (S_i · o_i) · Wo_iᵀ
        copy(L.resid, L.residMid, n);
        for (int e = 0; e < c.nAtt(); e++) mm.forward(L.residMid, L.attGated.expert(e), n, W.oProj().expert(e), true);
    }

    private void mlpForward(Activations.Layer L, ParamLayout.Layer<F32Tensor> W, F32Tensor next, int n) {
        RmsNorm.forward(L.residMid, W.postAttnNorm(), L.ln2, L.rstd2, n, eps);
        if (L.mlpRouter != null) routerForward(L.ln2, W.mlpRouter(), L.mlpRouter, n);
        copy(L.residMid, next, n);
        if (L.sparse != null) {
            sparseMlpForward(L, W, next, n);
            return;
        }
        mm.forward(L.mlpPre, L.ln2, n, W.upProj(), false);
        Gelu.forward(L.mlpPre.array(), 0, L.mlpAct.array(), 0, n * c.totalMlpWidth());
        if (L.mlpRouter != null) Gating.forward(L.mlpAct, L.mlpRouter.acts.probs(), L.mlpGated, n);
        for (int e = 0; e < c.nFfd(); e++) mm.forward(next, L.mlpGated.expert(e), n, W.downProj().expert(e), true);
    }

    /** Top-K experts per token, grouped by expert: one up and one down product per expert, scattered back with the gates. */
    private void sparseMlpForward(Activations.Layer L, ParamLayout.Layer<F32Tensor> W, F32Tensor next, int n) {
        Activations.SparseActs s = L.sparse;
        float[] probs = L.mlpRouter.probs();
        int k = s.k, e = c.nFfd();
        ExpertGroups.topK(probs, n, e, k, s.chosen);
        for (int slot = 0; slot < n * k; slot++) s.gate[slot] = probs[(slot / k) * e + s.chosen[slot]];
        s.groups.group(s.chosen, n, k);
        s.groups.rowsOfSlots(s.rowOfSlot);
        for (int x = 0; x < e; x++) s.counts[x] = s.groups.count(x);
        s.groups.gather(L.ln2.array(), d, s.in.array());
        mm.grouped(s.groups, s.pre, s.in, W.upProj());
        Gelu.forward(s.pre.array(), 0, s.act.array(), 0, s.groups.rows() * dFfd);
        mm.grouped(s.groups, s.out, s.act, W.downProj());
        Gating.scatter(s.out, s.rowOfSlot, s.chosen, s.gate, n, k, next);
    }

    /** The router's probabilities, and the log-probabilities and entropies its auxiliary loss needs. */
    private void routerForward(F32Tensor in, ParamLayout.Router<F32Tensor> W, RouterActs r, int n) {
        Routing.forward(mm, W.hidden(), W.out(), in, n, r.acts);
        Softmax.logForward(r.acts.logits().array(), 0, r.logProbs, 0, n, r.experts);
        RouterLoss.Entropies h = RouterLoss.entropies(r.probs(), r.logProbs, n, r.experts, r.pBar);
        r.marginalEntropy = h.marginal();
        r.conditionalEntropy = h.conditional();
    }

    private void copy(F32Tensor from, F32Tensor to, int n) {
        System.arraycopy(from.array(), from.off(), to.array(), to.off(), n * d);
    }

    // ------------------------------------------------------------------ backward

    /**
     * Forward with targets, then backward: adds {@code lossScale · ∂L/∂θ} into the gradient
     * buffer (lossScale = 1/accumulation steps for gradient accumulation). Returns the forward's
     * losses.
     */
    public Loss forwardBackward(int[] input, int[] targets, int batch, int seqLen, float lossScale) {
        if (targets == null) throw new IllegalArgumentException("forwardBackward needs targets");
        if (!Float.isFinite(lossScale)) throw new IllegalArgumentException("lossScale must be finite, got " + lossScale);
        Loss loss = forward(input, targets, batch, seqLen, lossScale);
        backward(lossScale);
        return loss;
    }

    private void backward(float lossScale) {
        Activations a = acts;
        Scratch s = a.scratch;
        int n = a.tokens;
        // dlogits: written over the logits by the forward's cross-entropy (fused with the softmax)
        mm.backward(s.dLnf, gradients.outputProjection(), a.logits, a.lnf, n, weights.outputProjection(), false);
        RmsNorm.backward(a.residFinal, weights.finalNorm(), a.rstdf, s.dLnf, s.dResid, gradients.finalNorm(), n, false);
        for (int l = a.layers.length - 1; l >= 0; l--) {
            Activations.Layer L = a.layers[l];
            ParamLayout.Layer<F32Tensor> W = weights.layer(l), G = gradients.layer(l);
            mlpBackward(L, W, G, s, n, lossScale);
            attentionBackward(L, W, G, s, a.batch, a.seqLen, n, lossScale);
        }
        Embedding.backward(gradients.embedTokens(), tokens, n, s.dResid);
    }

    /** dResid holds ∂L/∂(layer output); on return, ∂L/∂(residMid). */
    private void mlpBackward(Activations.Layer L, ParamLayout.Layer<F32Tensor> W, ParamLayout.Layer<F32Tensor> G,
                             Scratch s, int n, float lossScale) {
        if (L.sparse != null) {
            sparseMlpBackward(L, W, G, s, n, lossScale);
        } else {
            for (int e = 0; e < c.nFfd(); e++) {
                mm.backward(s.dMlpAct.expert(e), G.downProj().expert(e), s.dResid, L.mlpGated.expert(e), n,
                        W.downProj().expert(e), false);
            }
            if (L.mlpRouter != null) Gating.backward(s.dMlpAct, L.mlpAct, L.mlpRouter.acts.probs(), s.dMlpRouter.probs(), n);
            Gelu.backward(L.mlpPre.array(), 0, s.dMlpAct.array(), 0, s.dMlpPre.array(), 0, n * c.totalMlpWidth(), false);
            mm.backward(s.dLn, G.upProj(), s.dMlpPre, L.ln2, n, W.upProj(), false);
            if (L.mlpRouter != null) {
                routerBackward(L.ln2, W.mlpRouter(), G.mlpRouter(), L.mlpRouter, s.dMlpRouter, s, n,
                        c.auxWeightFfd() * lossScale, null);
            }
        }
        RmsNorm.backward(L.residMid, W.postAttnNorm(), L.rstd2, s.dLn, s.dResid, G.postAttnNorm(), n, true);
    }

    private void sparseMlpBackward(Activations.Layer L, ParamLayout.Layer<F32Tensor> W, ParamLayout.Layer<F32Tensor> G,
                                   Scratch s, int n, float lossScale) {
        Activations.SparseActs sp = L.sparse;
        Gating.scatterBackward(s.dResid, sp.out, sp.rowOfSlot, sp.chosen, sp.gate, n, sp.k, s.dSparseOut, s.dMlpRouter.probs());
        mm.groupedBackward(sp.groups, s.dSparseAct, G.downProj(), s.dSparseOut, sp.act, W.downProj());
        Gelu.backward(sp.pre.array(), 0, s.dSparseAct.array(), 0, s.dSparsePre.array(), 0, sp.groups.rows() * dFfd, false);
        mm.groupedBackward(sp.groups, s.dSparseIn, G.upProj(), s.dSparsePre, sp.in, W.upProj());
        Gating.gatherBackward(s.dSparseIn, sp.rowOfSlot, sp.chosen, n, sp.k, s.dLn);
        routerBackward(L.ln2, W.mlpRouter(), G.mlpRouter(), L.mlpRouter, s.dMlpRouter, s, n, c.auxWeightFfd() * lossScale,
                sp.counts);
    }

    /**
     * {@code dr.probs} holds ∂L_LM/∂S; adds the auxiliary loss's gradient and backpropagates through
     * the router into its weights' gradients and into dLn (accumulated).
     */
    private void routerBackward(F32Tensor in, ParamLayout.Router<F32Tensor> W, ParamLayout.Router<F32Tensor> G,
                                RouterActs r, Routing.Buffers dr, Scratch s, int n, double alpha, int[] switchCounts) {
        RouterLoss.auxBackward(c.auxLoss(), r.logProbs, r.pBar, switchCounts, n * c.trainingTopK(), n, r.experts, alpha,
                dr.probs().array());
        Routing.backward(mm, W.hidden(), W.out(), G.hidden(), G.out(), in, n, r.acts, dr, s.dLn);
    }

    /** dResid holds ∂L/∂residMid; on return, ∂L/∂(layer input). */
    private void attentionBackward(Activations.Layer L, ParamLayout.Layer<F32Tensor> W, ParamLayout.Layer<F32Tensor> G,
                                   Scratch s, int batch, int seqLen, int n, float lossScale) {
        for (int e = 0; e < c.nAtt(); e++) {
            mm.backward(s.dAttOut.expert(e), G.oProj().expert(e), s.dResid, L.attGated.expert(e), n,
                    W.oProj().expert(e), false);
        }
        if (L.attRouter != null) Gating.backward(s.dAttOut, L.attOut, L.attRouter.acts.probs(), s.dAttRouter.probs(), n);
        Attention.backward(s.dAttOut.array(), 0, qW, L.q.array(), 0, qW, L.k.array(), 0, L.v.array(), 0, kvW, L.att, 0,
                s.dQ.array(), 0, s.dK.array(), 0, s.dV.array(), 0, s.attention, 0, batch, seqLen, hq, nKv, dAtt, kvHeadOf);
        rope.backward(s.dQ.array(), 0, qW, batch, seqLen, hq, 0);
        rope.backward(s.dK.array(), 0, kvW, batch, seqLen, nKv, 0);
        mm.backward(s.dLn, G.qProj(), s.dQ, L.ln1, n, W.qProj(), false);
        mm.backward(s.dLn, G.kProj(), s.dK, L.ln1, n, W.kProj(), true);
        mm.backward(s.dLn, G.vProj(), s.dV, L.ln1, n, W.vProj(), true);
        if (L.attRouter != null) {
            routerBackward(L.ln1, W.attnRouter(), G.attnRouter(), L.attRouter, s.dAttRouter, s, n,
                    c.auxWeightAtt() * lossScale, null);
        }
        RmsNorm.backward(L.resid, W.inputNorm(), L.rstd1, s.dLn, s.dResid, G.inputNorm(), n, true);
    }
}
