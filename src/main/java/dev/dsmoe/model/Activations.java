package dev.dsmoe.model;

import dev.dsmoe.kernels.Attention;
import dev.dsmoe.kernels.ExpertGroups;

/**
 * Every activation the training backward needs, and the backward's scratch, allocated once for
 * (config, B, T) as in llm.c: nothing is allocated inside a training step. Field names say what
 * they hold; shapes use N = B·T tokens, Hq = N_att·N_head, F = N_ffd·D_ffd, R = router hidden.
 */
public final class Activations {

    /** Activations of one transformer layer. */
    public static final class Layer {
        /** Residual stream entering the layer [N, d], and after the attention block [N, d]. */
        final float[] resid, residMid;
        /** RMSNorm outputs and reciprocal RMS, before attention and before the MLP. */
        final float[] ln1, rstd1, ln2, rstd2;
        /** Query (after RoPE) [N, Hq·D_att]; shared keys (after RoPE) and values [N, N_kv·D_att]. */
        final float[] q, k, v;
        /** Attention probabilities [B, Hq, T, T]. */
        final float[] att;
        /** Per-head attention output before gating [N, Hq·D_att], and gate-scaled (the o_proj input). */
        final float[] attOut, attGated;
        final RouterActs attRouter, mlpRouter;
        /** Dense MLP: pre-activation, activation and gate-scaled activation [N, F]. */
        final float[] mlpPre, mlpAct, mlpGated;
        /** Sparse (top-k) MLP, grouped by expert: rows R = N·K. */
        final SparseActs sparse;

        Layer(ModelConfig c, int n, int b, int t, boolean sparseMlp) {
            int d = c.dEmb(), hq = c.totalQueryHeads() * c.dAtt(), kv = c.nKv() * c.dAtt();
            resid = new float[n * d];
            residMid = new float[n * d];
            ln1 = new float[n * d];
            ln2 = new float[n * d];
            rstd1 = new float[n];
            rstd2 = new float[n];
            q = new float[n * hq];
            k = new float[n * kv];
            v = new float[n * kv];
            att = new float[Math.toIntExact(Attention.attSize(b, c.totalQueryHeads(), t))];
            attOut = new float[n * hq];
            attGated = c.nAtt() > 1 ? new float[n * hq] : attOut;
            attRouter = c.nAtt() > 1 ? new RouterActs(c, n, c.nAtt()) : null;
            mlpRouter = c.nFfd() > 1 ? new RouterActs(c, n, c.nFfd()) : null;
            if (sparseMlp) {
                sparse = new SparseActs(c, n);
                mlpPre = mlpAct = mlpGated = null;
            } else {
                sparse = null;
                int f = c.totalMlpWidth();
                mlpPre = new float[n * f];
                mlpAct = new float[n * f];
                mlpGated = c.nFfd() > 1 ? new float[n * f] : mlpAct;
            }
        }
    }

    /** A router's activations: probabilities S and log S [N, E], MLP-router hidden [N, R], p̄ [E]. */
    static final class RouterActs {
        final int experts;
        final float[] logits, probs, logProbs;
        final float[] hiddenPre, hiddenAct;
        final double[] pBar;
        /** H(e) and H(e|x) of the last forward. */
        double marginalEntropy, conditionalEntropy;

        RouterActs(ModelConfig c, int n, int experts) {
            this.experts = experts;
            logits = new float[n * experts];
            probs = new float[n * experts];
            logProbs = new float[n * experts];
            boolean mlp = c.router() == ModelConfig.RouterKind.MLP;
            hiddenPre = mlp ? new float[n * c.routerHiddenSize()] : null;
            hiddenAct = mlp ? new float[n * c.routerHiddenSize()] : null;
            pBar = new double[experts];
        }
    }

    /** Top-k MLP activations: choices and gates per token-slot, and per-row grouped tensors. */
    static final class SparseActs {
        final int k;
        final int[] chosen, rowOfSlot;
        /** Token-slots routed to each expert in the last forward (the switch loss's f_i · N·K). */
        final int[] counts;
        final float[] gate;
        final ExpertGroups groups;
        /** Grouped rows: input [R, d], pre-activation and activation [R, D_ffd], expert output [R, d]. */
        final float[] in, pre, act, out;

        SparseActs(ModelConfig c, int n) {
            k = c.trainingTopK();
            int rows = n * k;
            chosen = new int[rows];
            rowOfSlot = new int[rows];
            counts = new int[c.nFfd()];
            gate = new float[rows];
            groups = new ExpertGroups(c.nFfd(), rows);
            in = new float[rows * c.dEmb()];
            pre = new float[rows * c.dFfd()];
            act = new float[rows * c.dFfd()];
            out = new float[rows * c.dEmb()];
        }
    }

    /** Gradient scratch shared by all layers during backward. */
    static final class Scratch {
        final float[] dResid, dLn, dQ, dK, dV, dAttOut, dMlpAct, dMlpPre, dRouterProbs, dRouterLogits,
                dRouterHidden, dRouterHiddenPre, attention, dSparseOut, dSparseIn, dLnf;

        Scratch(ModelConfig c, int n, int b, int t) {
            int d = c.dEmb(), hq = c.totalQueryHeads() * c.dAtt(), kv = c.nKv() * c.dAtt();
            int e = Math.max(c.nAtt(), c.nFfd());
            dResid = new float[n * d];
            dLn = new float[n * d];
            dLnf = new float[n * d];
            dQ = new float[n * hq];
            dK = new float[n * kv];
            dV = new float[n * kv];
            dAttOut = new float[n * hq];
            int f = c.totalMlpWidth(), sparseRows = n * c.trainingTopK();
            dMlpAct = new float[Math.max(n * f, sparseRows * c.dFfd())];
            dMlpPre = new float[dMlpAct.length];
            dRouterProbs = new float[n * e];
            dRouterLogits = new float[n * e];
            boolean mlp = c.router() == ModelConfig.RouterKind.MLP;
            dRouterHidden = mlp ? new float[n * c.routerHiddenSize()] : null;
            dRouterHiddenPre = mlp ? new float[n * c.routerHiddenSize()] : null;
            attention = new float[Math.max(Attention.backwardScratchSize(b, t, c.nKv(), c.dAtt()),
                    Attention.forwardScratchSize(b, t, c.nKv(), c.dAtt()))];
            boolean sparse = c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K;
            dSparseOut = sparse ? new float[sparseRows * d] : null;
            dSparseIn = sparse ? new float[sparseRows * d] : null;
        }
    }

    final int batch, seqLen, tokens;
    final Layer[] layers;
    /** Final residual [N, d], final norm output and rstd, logits [N, V] (dlogits in backward), per-token loss. */
    final float[] residFinal, lnf, rstdf, logits, losses;
    final Scratch scratch;

    public Activations(ModelConfig c, int batch, int seqLen) {
        if (batch < 1 || seqLen < 1) throw new IllegalArgumentException("batch and sequence length must be >= 1");
        if (seqLen > c.maxPositions()) {
            throw new IllegalArgumentException("sequence length " + seqLen + " exceeds max_position_embeddings "
                    + c.maxPositions());
        }
        this.batch = batch;
        this.seqLen = seqLen;
        this.tokens = batch * seqLen;
        int n = tokens;
        boolean sparse = c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K && c.nFfd() > 1;
        layers = new Layer[c.numLayers()];
        for (int l = 0; l < layers.length; l++) layers[l] = new Layer(c, n, batch, seqLen, sparse);
        residFinal = new float[n * c.dEmb()];
        lnf = new float[n * c.dEmb()];
        rstdf = new float[n];
        logits = new float[Math.multiplyExact(n, c.vocabSize())];
        losses = new float[n];
        scratch = new Scratch(c, n, batch, seqLen);
    }

    public int batch() { return batch; }

    public int seqLen() { return seqLen; }

    /** Bytes held by the arena (activations and backward scratch), for reporting. */
    public long bytes() {
        long floats = 0;
        for (Layer l : layers) {
            floats += (long) l.resid.length * 4 + l.q.length + l.k.length * 2L + l.att.length + l.attOut.length * 2L;
            if (l.mlpPre != null) floats += l.mlpPre.length * 3L;
            if (l.sparse != null) floats += l.sparse.in.length * 2L + l.sparse.pre.length * 2L;
        }
        floats += logits.length + residFinal.length * 2L;
        return floats * 4;
    }
}
