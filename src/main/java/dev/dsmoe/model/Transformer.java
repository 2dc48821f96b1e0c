package dev.dsmoe.model;

import dev.dsmoe.kernels.Attention;
import dev.dsmoe.kernels.CrossEntropy;
import dev.dsmoe.kernels.ExpertGroups;
import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.kernels.Gelu;
import dev.dsmoe.kernels.Gemm;
import dev.dsmoe.kernels.Kernels;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.kernels.RmsNorm;
import dev.dsmoe.kernels.Rope;
import dev.dsmoe.kernels.Softmax;

/**
 * The training forward and backward of the three model families (Dense, SMoE, DS-MoE), written
 * out layer by layer as in llm.c: no autograd, parameters and gradients in flat buffers laid out
 * by {@link ParamLayout}, activations in one {@link Activations} arena.
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
    private final ParamLayout.Weights<F32Tensor> P, G;
    private final Rope rope;
    private final int[] kvHeadOf;
    private final int d, hq, headW, kvW, dAtt, nKv, dFfd;
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
        this.P = layout.views(params);
        this.G = layout.views(grads);
        this.d = c.dEmb();
        this.dAtt = c.dAtt();
        this.nKv = c.nKv();
        this.hq = c.totalQueryHeads();
        this.headW = c.nHead() * dAtt;
        this.kvW = nKv * dAtt;
        this.dFfd = c.dFfd();
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

    private static Gemm gemm() {
        return Kernels.gemm();
    }

    private boolean sparseMlp() {
        return c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K && c.nFfd() > 1;
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

        // Embedding lookup into the first layer's residual stream.
        float[] x0 = a.layers.length > 0 ? a.layers[0].resid : a.residFinal;
        int emb = layout.embedTokens().off();
        for (int t = 0; t < n; t++) System.arraycopy(params, emb + input[t] * d, x0, t * d, d);

        double auxAtt = 0, auxMlp = 0, attMarg = 0, attCond = 0, mlpMarg = 0, mlpCond = 0;
        int attRouters = 0, mlpRouters = 0;
        for (int l = 0; l < a.layers.length; l++) {
            Activations.Layer L = a.layers[l];
            ParamLayout.Layer<F32Tensor> P = this.P.layer(l);
            float[] next = l + 1 < a.layers.length ? a.layers[l + 1].resid : a.residFinal;
            attentionForward(L, P, a.batch, a.seqLen, n);
            mlpForward(L, P, next, n);
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

        RmsNorm.forward(a.residFinal, 0, params, layout.finalNorm().off(), a.lnf, 0, a.rstdf, 0, n, d,
                (float) c.rmsNormEps());
        gemm().sgemm(false, true, n, vocab, d, 1f, a.lnf, 0, d, params, layout.outputProjection().off(), d,
                0f, a.logits, 0, vocab);
        double lm = Double.NaN;
        if (targets != null) {
            lm = Float.isNaN(lossScale)
                    ? CrossEntropy.forward(a.logits, 0, targets, 0, n, vocab, CrossEntropy.IGNORE, a.losses, 0)
                    : CrossEntropy.forwardBackward(a.logits, 0, targets, 0, n, vocab, CrossEntropy.IGNORE, lossScale,
                            a.logits, 0, a.losses, 0);
        }
        double total = lm + c.auxWeightAtt() * auxAtt + c.auxWeightFfd() * auxMlp;
        return new Loss(total, lm, auxAtt, auxMlp,
                attRouters > 0 ? attMarg / attRouters : Double.NaN, attRouters > 0 ? attCond / attRouters : Double.NaN,
                mlpRouters > 0 ? mlpMarg / mlpRouters : Double.NaN, mlpRouters > 0 ? mlpCond / mlpRouters : Double.NaN);
    }

    /** Logits {@code [B·T, V]} of the last forward. */
    public float[] logits() {
        return acts.logits;
    }

    /** Per-token losses {@code [B·T]} of the last forward with targets. */
    public float[] tokenLosses() {
        return acts.losses;
    }

    private double auxLoss(Activations.RouterActs r, Activations.SparseActs sparse, int n) {
        return switch (c.auxLoss()) {
            case NONE -> 0;
            case MI -> -r.marginalEntropy + r.conditionalEntropy;
            case SWITCH -> sparse != null ? RouterLoss.switchLoss(r.pBar, sparse.counts, n * sparse.k, r.experts) : 0;
        };
    }

    private void attentionForward(Activations.Layer L, ParamLayout.Layer<F32Tensor> P, int batch, int seqLen, int n) {
        Gemm g = gemm();
        float eps = (float) c.rmsNormEps();
        int qW = hq * dAtt;
        RmsNorm.forward(L.resid, 0, params, P.inputNorm().off(), L.ln1, 0, L.rstd1, 0, n, d, eps);
        if (L.attRouter != null) routerForward(L.ln1, P.attnRouter(), L.attRouter, n);
        g.sgemm(false, true, n, qW, d, 1f, L.ln1, 0, d, params, P.qProj().off(), d, 0f, L.q, 0, qW);
        g.sgemm(false, true, n, kvW, d, 1f, L.ln1, 0, d, params, P.kProj().off(), d, 0f, L.k, 0, kvW);
        g.sgemm(false, true, n, kvW, d, 1f, L.ln1, 0, d, params, P.vProj().off(), d, 0f, L.v, 0, kvW);
        rope.forward(L.q, 0, qW, batch, seqLen, hq, 0);
        rope.forward(L.k, 0, kvW, batch, seqLen, nKv, 0);
        Attention.forward(L.q, 0, qW, L.k, 0, L.v, 0, kvW, L.att, 0, L.attOut, 0, qW,
                acts.scratch.attention, 0, batch, seqLen, hq, nKv, dAtt, kvHeadOf);
        if (L.attRouter != null) gate(L.attOut, L.attRouter.probs, L.attGated, n, c.nAtt(), headW);
        // residMid = resid + Σ_i (S_i · o_i) · Wo_iᵀ
        System.arraycopy(L.resid, 0, L.residMid, 0, n * d);
        for (int e = 0; e < c.nAtt(); e++) {
            g.sgemm(false, true, n, d, headW, 1f, L.attGated, e * headW, qW,
                    params, P.oProj().expert(e).off(), headW, 1f, L.residMid, 0, d);
        }
    }

    private void mlpForward(Activations.Layer L, ParamLayout.Layer<F32Tensor> P, float[] next, int n) {
        RmsNorm.forward(L.residMid, 0, params, P.postAttnNorm().off(), L.ln2, 0, L.rstd2, 0, n, d,
                (float) c.rmsNormEps());
        if (L.mlpRouter != null) routerForward(L.ln2, P.mlpRouter(), L.mlpRouter, n);
        System.arraycopy(L.residMid, 0, next, 0, n * d);
        if (L.sparse != null) {
            sparseMlpForward(L, P, next, n);
            return;
        }
        Gemm g = gemm();
        int f = c.totalMlpWidth();
        g.sgemm(false, true, n, f, d, 1f, L.ln2, 0, d, params, P.upProj().off(), d, 0f, L.mlpPre, 0, f);
        Gelu.forward(L.mlpPre, 0, L.mlpAct, 0, n * f);
        if (L.mlpRouter != null) gate(L.mlpAct, L.mlpRouter.probs, L.mlpGated, n, c.nFfd(), dFfd);
        for (int e = 0; e < c.nFfd(); e++) {
            g.sgemm(false, true, n, d, dFfd, 1f, L.mlpGated, e * dFfd, f,
                    params, P.downProj().expert(e).off(), dFfd, 1f, next, 0, d);
        }
    }

    /** Top-K experts per token, grouped by expert: one up and one down product per expert. */
    private void sparseMlpForward(Activations.Layer L, ParamLayout.Layer<F32Tensor> P, float[] next, int n) {
        Activations.SparseActs s = L.sparse;
        Activations.RouterActs r = L.mlpRouter;
        int k = s.k, e = c.nFfd();
        ExpertGroups.topK(r.probs, n, e, k, s.chosen);
        for (int slot = 0; slot < n * k; slot++) s.gate[slot] = r.probs[(slot / k) * e + s.chosen[slot]];
        s.groups.group(s.chosen, n, k);
        for (int row = 0; row < s.groups.rows(); row++) s.rowOfSlot[s.groups.slot(row)] = row;
        for (int x = 0; x < e; x++) s.counts[x] = s.groups.count(x);
        s.groups.gather(L.ln2, d, s.in);
        Gemm g = gemm();
        for (int x = 0; x < e; x++) {
            int cnt = s.groups.count(x), r0 = s.groups.start(x);
            if (cnt == 0) continue;
            g.sgemm(false, true, cnt, dFfd, d, 1f, s.in, r0 * d, d,
                    params, P.upProj().expert(x).off(), d, 0f, s.pre, r0 * dFfd, dFfd);
        }
        Gelu.forward(s.pre, 0, s.act, 0, s.groups.rows() * dFfd);
        for (int x = 0; x < e; x++) {
            int cnt = s.groups.count(x), r0 = s.groups.start(x);
            if (cnt == 0) continue;
            g.sgemm(false, true, cnt, d, dFfd, 1f, s.act, r0 * dFfd, dFfd,
                    params, P.downProj().expert(x).off(), dFfd, 0f, s.out, r0 * d, d);
        }
        // Scatter back with the gates, token by token (each token's slots in a fixed order).
        Parallel.forRange(n, 16, (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                for (int j = 0; j < k; j++) {
                    int slot = t * k + j, row = s.rowOfSlot[slot];
                    float gv = s.gate[slot];
                    for (int i = 0; i < d; i++) next[t * d + i] += gv * s.out[row * d + i];
                }
            }
        });
    }

    private void routerForward(float[] ln, ParamLayout.Router<F32Tensor> R, Activations.RouterActs r, int n) {
        Gemm g = gemm();
        int e = r.experts;
        if (R.isMlp()) {
            int h = c.routerHiddenSize();
            g.sgemm(false, true, n, h, d, 1f, ln, 0, d, params, R.hidden().off(), d, 0f, r.hiddenPre, 0, h);
            Gelu.forward(r.hiddenPre, 0, r.hiddenAct, 0, n * h);
            g.sgemm(false, true, n, e, h, 1f, r.hiddenAct, 0, h, params, R.out().off(), h, 0f, r.logits, 0, e);
        } else {
            g.sgemm(false, true, n, e, d, 1f, ln, 0, d, params, R.out().off(), d, 0f, r.logits, 0, e);
        }
        Softmax.forward(r.logits, 0, r.probs, 0, n, e);
        Softmax.logForward(r.logits, 0, r.logProbs, 0, n, e);
        RouterLoss.Entropies h = RouterLoss.entropies(r.probs, r.logProbs, n, e, r.pBar);
        r.marginalEntropy = h.marginal();
        r.conditionalEntropy = h.conditional();
    }

    /** {@code dst[t, i·w + j] = S[t, i] · src[t, i·w + j]}: each expert's block scaled by its gate. */
    private static void gate(float[] src, float[] probs, float[] dst, int n, int experts, int w) {
        Parallel.forRange(n, 16, (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                for (int e = 0; e < experts; e++) {
                    float s = probs[t * experts + e];
                    int o = (t * experts + e) * w;
                    for (int j = 0; j < w; j++) dst[o + j] = s * src[o + j];
                }
            }
        });
    }

    /**
     * Backward of {@link #gate}: {@code dS[t,i] = Σ_j dGated·src} and {@code dSrc = S · dGated}
     * (written over dGated, in place).
     */
    private static void gateBackward(float[] dGated, float[] src, float[] probs, float[] dProbs, int n,
                                     int experts, int w) {
        Parallel.forRange(n, 16, (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                for (int e = 0; e < experts; e++) {
                    float s = probs[t * experts + e];
                    int o = (t * experts + e) * w;
                    double dot = 0;
                    for (int j = 0; j < w; j++) {
                        dot += dGated[o + j] * src[o + j];
                        dGated[o + j] *= s;
                    }
                    dProbs[t * experts + e] = (float) dot;
                }
            }
        });
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
        Activations.Scratch s = a.scratch;
        Gemm g = gemm();
        int n = a.tokens, vocab = c.vocabSize();

        // dlogits: written over the logits by the forward's cross-entropy (fused with the softmax)
        int out = layout.outputProjection().off();
        // dlnf = dlogits · E ; dE += dlogitsᵀ · lnf
        g.sgemm(false, false, n, d, vocab, 1f, a.logits, 0, vocab, params, out, d, 0f, s.dLnf, 0, d);
        g.sgemm(true, false, vocab, d, n, 1f, a.logits, 0, vocab, a.lnf, 0, d, 1f, grads, out, d);
        RmsNorm.backward(a.residFinal, 0, params, layout.finalNorm().off(), a.rstdf, 0, s.dLnf, 0,
                s.dResid, 0, grads, layout.finalNorm().off(), n, d, false);

        for (int l = a.layers.length - 1; l >= 0; l--) {
            Activations.Layer L = a.layers[l];
            ParamLayout.Layer<F32Tensor> P = this.P.layer(l);
            mlpBackward(L, P, s, n, lossScale);
            attentionBackward(L, P, s, a.batch, a.seqLen, n, lossScale);
        }

        // Embedding rows receive the residual stream's gradient at the input.
        int emb = layout.embedTokens().off();
        for (int t = 0; t < n; t++) {
            int row = emb + tokens[t] * d;
            for (int i = 0; i < d; i++) grads[row + i] += s.dResid[t * d + i];
        }
    }

    /** dResid holds ∂L/∂(layer output); on return, ∂L/∂(residMid). */
    private void mlpBackward(Activations.Layer L, ParamLayout.Layer<F32Tensor> P, Activations.Scratch s, int n, float lossScale) {
        if (L.sparse != null) {
            sparseMlpBackward(L, P, s, n, lossScale);
        } else {
            Gemm g = gemm();
            int f = c.totalMlpWidth();
            for (int e = 0; e < c.nFfd(); e++) {
                int w = P.downProj().expert(e).off();
                // dW_down,e += dOutᵀ · gated_e ; dGated_e = dOut · W_down,e
                g.sgemm(true, false, d, dFfd, n, 1f, s.dResid, 0, d, L.mlpGated, e * dFfd, f, 1f, grads, w, dFfd);
                g.sgemm(false, false, n, dFfd, d, 1f, s.dResid, 0, d, params, w, dFfd, 0f, s.dMlpAct, e * dFfd, f);
            }
            if (L.mlpRouter != null) {
                gateBackward(s.dMlpAct, L.mlpAct, L.mlpRouter.probs, s.dRouterProbs, n, c.nFfd(), dFfd);
            }
            Gelu.backward(L.mlpPre, 0, s.dMlpAct, 0, s.dMlpPre, 0, n * f, false);
            g.sgemm(true, false, f, d, n, 1f, s.dMlpPre, 0, f, L.ln2, 0, d, 1f, grads, P.upProj().off(), d);
            g.sgemm(false, false, n, d, f, 1f, s.dMlpPre, 0, f, params, P.upProj().off(), d, 0f, s.dLn, 0, d);
            if (L.mlpRouter != null) {
                routerBackward(L.ln2, P.mlpRouter(), L.mlpRouter, s, n, c.auxWeightFfd() * lossScale, null);
            }
        }
        RmsNorm.backward(L.residMid, 0, params, P.postAttnNorm().off(), L.rstd2, 0, s.dLn, 0,
                s.dResid, 0, grads, P.postAttnNorm().off(), n, d, true);
    }

    private void sparseMlpBackward(Activations.Layer L, ParamLayout.Layer<F32Tensor> P, Activations.Scratch s, int n,
                                   float lossScale) {
        Activations.SparseActs sp = L.sparse;
        int k = sp.k, e = c.nFfd();
        float[] dOut = s.dResid, dRows = s.dSparseOut, dProbs = s.dRouterProbs;
        java.util.Arrays.fill(dProbs, 0, n * e, 0f);
        // Gate gradient (only selected experts) and the gated gradient of each grouped row.
        Parallel.forRange(n, 16, (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                for (int j = 0; j < k; j++) {
                    int slot = t * k + j, row = sp.rowOfSlot[slot];
                    float gv = sp.gate[slot];
                    double dot = 0;
                    for (int i = 0; i < d; i++) {
                        float go = dOut[t * d + i];
                        dot += go * sp.out[row * d + i];
                        dRows[row * d + i] = gv * go;
                    }
                    dProbs[t * e + sp.chosen[slot]] += (float) dot;
                }
            }
        });
        Gemm g = gemm();
        for (int x = 0; x < e; x++) {
            int cnt = sp.groups.count(x), r0 = sp.groups.start(x);
            if (cnt == 0) continue;
            int w = P.downProj().expert(x).off();
            g.sgemm(true, false, d, dFfd, cnt, 1f, dRows, r0 * d, d, sp.act, r0 * dFfd, dFfd, 1f, grads, w, dFfd);
            g.sgemm(false, false, cnt, dFfd, d, 1f, dRows, r0 * d, d, params, w, dFfd, 0f, s.dMlpAct, r0 * dFfd, dFfd);
        }
        int rows = sp.groups.rows();
        Gelu.backward(sp.pre, 0, s.dMlpAct, 0, s.dMlpPre, 0, rows * dFfd, false);
        for (int x = 0; x < e; x++) {
            int cnt = sp.groups.count(x), r0 = sp.groups.start(x);
            if (cnt == 0) continue;
            int w = P.upProj().expert(x).off();
            g.sgemm(true, false, dFfd, d, cnt, 1f, s.dMlpPre, r0 * dFfd, dFfd, sp.in, r0 * d, d, 1f, grads, w, d);
            g.sgemm(false, false, cnt, d, dFfd, 1f, s.dMlpPre, r0 * dFfd, dFfd, params, w, d, 0f, s.dSparseIn, r0 * d, d);
        }
        // Gather each token's slot gradients back in slot order.
        float[] dLn = s.dLn, dIn = s.dSparseIn;
        Parallel.forRange(n, 16, (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                java.util.Arrays.fill(dLn, t * d, (t + 1) * d, 0f);
                for (int j = 0; j < k; j++) {
                    int row = sp.rowOfSlot[t * k + j];
                    for (int i = 0; i < d; i++) dLn[t * d + i] += dIn[row * d + i];
                }
            }
        });
        routerBackward(L.ln2, P.mlpRouter(), L.mlpRouter, s, n, c.auxWeightFfd() * lossScale, sp.counts);
    }

    /**
     * dRouterProbs holds ∂L_LM/∂S; adds the auxiliary loss's gradient, backpropagates through the
     * softmax and the router into its weights' gradients and into dLn (accumulated).
     */
    private void routerBackward(float[] ln, ParamLayout.Router<F32Tensor> R, Activations.RouterActs r, Activations.Scratch s,
                                int n, double alpha, int[] switchCounts) {
        int e = r.experts;
        switch (c.auxLoss()) {
            case MI -> RouterLoss.miBackward(r.logProbs, r.pBar, n, e, alpha, s.dRouterProbs);
            case SWITCH -> {
                if (switchCounts != null) {
                    RouterLoss.switchBackward(switchCounts, n * c.trainingTopK(), n, e, alpha, s.dRouterProbs);
                }
            }
            case NONE -> { }
        }
        Softmax.backward(r.probs, 0, s.dRouterProbs, 0, s.dRouterLogits, 0, n, e, false);
        Gemm g = gemm();
        if (R.isMlp()) {
            int h = c.routerHiddenSize();
            g.sgemm(true, false, e, h, n, 1f, s.dRouterLogits, 0, e, r.hiddenAct, 0, h, 1f, grads, R.out().off(), h);
            g.sgemm(false, false, n, h, e, 1f, s.dRouterLogits, 0, e, params, R.out().off(), h, 0f, s.dRouterHidden, 0, h);
            Gelu.backward(r.hiddenPre, 0, s.dRouterHidden, 0, s.dRouterHiddenPre, 0, n * h, false);
            g.sgemm(true, false, h, d, n, 1f, s.dRouterHiddenPre, 0, h, ln, 0, d, 1f, grads, R.hidden().off(), d);
            g.sgemm(false, false, n, d, h, 1f, s.dRouterHiddenPre, 0, h, params, R.hidden().off(), d, 1f, s.dLn, 0, d);
        } else {
            g.sgemm(true, false, e, d, n, 1f, s.dRouterLogits, 0, e, ln, 0, d, 1f, grads, R.out().off(), d);
            g.sgemm(false, false, n, d, e, 1f, s.dRouterLogits, 0, e, params, R.out().off(), d, 1f, s.dLn, 0, d);
        }
    }

    /** dResid holds ∂L/∂residMid; on return, ∂L/∂(layer input). */
    private void attentionBackward(Activations.Layer L, ParamLayout.Layer<F32Tensor> P, Activations.Scratch s, int batch,
                                   int seqLen, int n, float lossScale) {
        Gemm g = gemm();
        int qW = hq * dAtt;
        for (int e = 0; e < c.nAtt(); e++) {
            int w = P.oProj().expert(e).off();
            g.sgemm(true, false, d, headW, n, 1f, s.dResid, 0, d, L.attGated, e * headW, qW, 1f, grads, w, headW);
            g.sgemm(false, false, n, headW, d, 1f, s.dResid, 0, d, params, w, headW, 0f, s.dAttOut, e * headW, qW);
        }
        if (L.attRouter != null) {
            gateBackward(s.dAttOut, L.attOut, L.attRouter.probs, s.dRouterProbs, n, c.nAtt(), headW);
        }
        Attention.backward(s.dAttOut, 0, qW, L.q, 0, qW, L.k, 0, L.v, 0, kvW, L.att, 0,
                s.dQ, 0, s.dK, 0, s.dV, 0, s.attention, 0, batch, seqLen, hq, nKv, dAtt, kvHeadOf);
        rope.backward(s.dQ, 0, qW, batch, seqLen, hq, 0);
        rope.backward(s.dK, 0, kvW, batch, seqLen, nKv, 0);
        g.sgemm(true, false, qW, d, n, 1f, s.dQ, 0, qW, L.ln1, 0, d, 1f, grads, P.qProj().off(), d);
        g.sgemm(true, false, kvW, d, n, 1f, s.dK, 0, kvW, L.ln1, 0, d, 1f, grads, P.kProj().off(), d);
        g.sgemm(true, false, kvW, d, n, 1f, s.dV, 0, kvW, L.ln1, 0, d, 1f, grads, P.vProj().off(), d);
        g.sgemm(false, false, n, d, qW, 1f, s.dQ, 0, qW, params, P.qProj().off(), d, 0f, s.dLn, 0, d);
        g.sgemm(false, false, n, d, kvW, 1f, s.dK, 0, kvW, params, P.kProj().off(), d, 1f, s.dLn, 0, d);
        g.sgemm(false, false, n, d, kvW, 1f, s.dV, 0, kvW, params, P.vProj().off(), d, 1f, s.dLn, 0, d);
        if (L.attRouter != null) {
            routerBackward(L.ln1, P.attnRouter(), L.attRouter, s, n, c.auxWeightAtt() * lossScale, null);
        }
        RmsNorm.backward(L.resid, 0, params, P.inputNorm().off(), L.rstd1, 0, s.dLn, 0,
                s.dResid, 0, grads, P.inputNorm().off(), n, d, true);
    }
}
