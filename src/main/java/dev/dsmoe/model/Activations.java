package dev.dsmoe.model;

import dev.dsmoe.kernels.Attention;
import dev.dsmoe.kernels.ExpertGroups;

/**
 * Every activation the training backward needs, and the backward's scratch, allocated once for
 * (config, B, T) as in llm.c: nothing is allocated inside a training step. Field names say what
 * they hold; shapes use N = B·T tokens, Hq = N_att·N_head, F = N_ffd·D_ffd, R = router hidden.
 * Every array comes from an {@link ArrayAllocator}, so {@link #footprint} counts the arena by
 * running this same constructor, and sizes are products of longs, checked, never wrapped ints.
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

        Layer(ModelConfig c, long n, int b, int t, boolean sparseMlp, ArrayAllocator a) {
            long d = c.dEmb(), hq = (long) c.totalQueryHeads() * c.dAtt(), kv = (long) c.nKv() * c.dAtt();
            resid = a.floats(n, d);
            residMid = a.floats(n, d);
            ln1 = a.floats(n, d);
            ln2 = a.floats(n, d);
            rstd1 = a.floats(n);
            rstd2 = a.floats(n);
            q = a.floats(n, hq);
            k = a.floats(n, kv);
            v = a.floats(n, kv);
            att = a.floats(Attention.attSize(b, c.totalQueryHeads(), t));
            attOut = a.floats(n, hq);
            attGated = c.nAtt() > 1 ? a.floats(n, hq) : attOut;
            attRouter = c.nAtt() > 1 ? new RouterActs(c, n, c.nAtt(), a) : null;
            mlpRouter = c.nFfd() > 1 ? new RouterActs(c, n, c.nFfd(), a) : null;
            if (sparseMlp) {
                sparse = new SparseActs(c, n, a);
                mlpPre = mlpAct = mlpGated = null;
            } else {
                sparse = null;
                long f = c.totalMlpWidth();
                mlpPre = a.floats(n, f);
                mlpAct = a.floats(n, f);
                mlpGated = c.nFfd() > 1 ? a.floats(n, f) : mlpAct;
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

        RouterActs(ModelConfig c, long n, int experts, ArrayAllocator a) {
            this.experts = experts;
            logits = a.floats(n, experts);
            probs = a.floats(n, experts);
            logProbs = a.floats(n, experts);
            boolean mlp = c.router() == ModelConfig.RouterKind.MLP;
            hiddenPre = mlp ? a.floats(n, c.routerHiddenSize()) : null;
            hiddenAct = mlp ? a.floats(n, c.routerHiddenSize()) : null;
            pBar = a.doubles(experts);
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

        SparseActs(ModelConfig c, long n, ArrayAllocator a) {
            k = c.trainingTopK();
            long rows = Math.multiplyExact(n, k);
            chosen = a.ints(rows);
            rowOfSlot = a.ints(rows);
            counts = a.ints(c.nFfd());
            gate = a.floats(rows);
            a.add(ExpertGroups.bytes(c.nFfd(), rows), rows);
            groups = a.allocates() ? new ExpertGroups(c.nFfd(), (int) rows) : null;
            in = a.floats(rows, c.dEmb());
            pre = a.floats(rows, c.dFfd());
            act = a.floats(rows, c.dFfd());
            out = a.floats(rows, c.dEmb());
        }
    }

    /** Gradient scratch shared by all layers during backward. */
    static final class Scratch {
        final float[] dResid, dLn, dQ, dK, dV, dAttOut, dMlpAct, dMlpPre, dRouterProbs, dRouterLogits,
                dRouterHidden, dRouterHiddenPre, attention, dSparseOut, dSparseIn, dLnf;

        Scratch(ModelConfig c, long n, int b, int t, ArrayAllocator a) {
            long d = c.dEmb(), hq = (long) c.totalQueryHeads() * c.dAtt(), kv = (long) c.nKv() * c.dAtt();
            int e = Math.max(c.nAtt(), c.nFfd());
            dResid = a.floats(n, d);
            dLn = a.floats(n, d);
            dLnf = a.floats(n, d);
            dQ = a.floats(n, hq);
            dK = a.floats(n, kv);
            dV = a.floats(n, kv);
            dAttOut = a.floats(n, hq);
            long f = c.totalMlpWidth(), sparseRows = Math.multiplyExact(n, c.trainingTopK());
            long mlpFloats = Math.max(Math.multiplyExact(n, f), Math.multiplyExact(sparseRows, c.dFfd()));
            dMlpAct = a.floats(mlpFloats);
            dMlpPre = a.floats(mlpFloats);
            dRouterProbs = a.floats(n, e);
            dRouterLogits = a.floats(n, e);
            boolean mlp = c.router() == ModelConfig.RouterKind.MLP;
            dRouterHidden = mlp ? a.floats(n, c.routerHiddenSize()) : null;
            dRouterHiddenPre = mlp ? a.floats(n, c.routerHiddenSize()) : null;
            attention = a.floats(Math.max(Attention.backwardScratchSize(b, t, c.nKv(), c.dAtt()),
                    Attention.forwardScratchSize(b, t, c.nKv(), c.dAtt())));
            boolean sparse = c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K;
            dSparseOut = sparse ? a.floats(sparseRows, d) : null;
            dSparseIn = sparse ? a.floats(sparseRows, d) : null;
        }
    }

    final int batch, seqLen, tokens;
    final Layer[] layers;
    /** Final residual [N, d], final norm output and rstd, logits [N, V] (dlogits in backward), per-token loss. */
    final float[] residFinal, lnf, rstdf, logits, losses;
    final Scratch scratch;
    /** Bytes of every array above, counted as they were allocated. */
    private final long bytes;

    public Activations(ModelConfig c, int batch, int seqLen) {
        this(c, batch, seqLen, ArrayAllocator.allocating("lower the batch or sequence length"));
    }

    private Activations(ModelConfig c, int batch, int seqLen, ArrayAllocator a) {
        if (batch < 1 || seqLen < 1) throw new IllegalArgumentException("batch and sequence length must be >= 1");
        if (seqLen > c.maxPositions()) {
            throw new IllegalArgumentException("sequence length " + seqLen + " exceeds max_position_embeddings "
                    + c.maxPositions());
        }
        this.batch = batch;
        this.seqLen = seqLen;
        long n = (long) batch * seqLen;
        this.tokens = n > Integer.MAX_VALUE ? -1 : (int) n; // only a counted arena gets this far with more
        boolean sparse = c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K && c.nFfd() > 1;
        layers = new Layer[c.numLayers()];
        for (int l = 0; l < layers.length; l++) layers[l] = new Layer(c, n, batch, seqLen, sparse, a);
        residFinal = a.floats(n, c.dEmb());
        lnf = a.floats(n, c.dEmb());
        rstdf = a.floats(n);
        logits = a.floats(n, c.vocabSize());
        losses = a.floats(n);
        scratch = new Scratch(c, n, batch, seqLen, a);
        bytes = a.bytes();
    }

    /**
     * What {@code new Activations(c, batch, seqLen)} allocates, without allocating it: the same
     * constructor, run with a counting allocator.
     */
    public static Footprint footprint(ModelConfig c, int batch, int seqLen) {
        ArrayAllocator a = ArrayAllocator.counting();
        try {
            new Activations(c, batch, seqLen, a);
        } catch (ArithmeticException e) {
            return Footprint.heap("activations", Long.MAX_VALUE, Long.MAX_VALUE); // past a long: no machine has it
        }
        return a.footprint("activations");
    }

    public int batch() { return batch; }

    public int seqLen() { return seqLen; }

    /** Bytes held by the arena (activations and backward scratch). */
    public long bytes() {
        return bytes;
    }
}
