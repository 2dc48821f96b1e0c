package dev.dsmoe.model;

import dev.dsmoe.kernels.Attention;
import dev.dsmoe.kernels.ExpertGroups;
import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.kernels.Routing;

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
        final F32Tensor resid, residMid;
        /** RMSNorm outputs [N, d] and their reciprocal RMS [N], before attention and before the MLP. */
        final F32Tensor ln1, ln2;
        final float[] rstd1, rstd2;
        /** Query (after RoPE) [N, Hq·D_att]; shared keys (after RoPE) and values [N, N_kv·D_att]. */
        final F32Tensor q, k, v;
        /** Attention probabilities [B, Hq, T, T]. */
        final float[] att;
        /**
         * Per-head attention output before gating, and gate-scaled (the o_proj input):
         * [N, N_att·N_head·D_att], expert i's heads in column block {@code expert(i)}.
         */
        final F32Tensor attOut, attGated;
        final RouterActs attRouter, mlpRouter;
        /** Dense MLP: pre-activation [N, F]; activation and gate-scaled activation [N, F] in N_ffd expert blocks. */
        final F32Tensor mlpPre, mlpAct, mlpGated;
        /** Sparse (top-k) MLP, grouped by expert: rows R = N·K. */
        final SparseActs sparse;

        Layer(ModelConfig c, long n, int b, int t, boolean sparseMlp, ArrayAllocator a) {
            long d = c.dEmb(), kv = (long) c.nKv() * c.dAtt(), headW = (long) c.nHead() * c.dAtt();
            resid = a.matrix(n, d);
            residMid = a.matrix(n, d);
            ln1 = a.matrix(n, d);
            ln2 = a.matrix(n, d);
            rstd1 = a.floats(n);
            rstd2 = a.floats(n);
            q = a.matrix(n, c.nAtt() * headW);
            k = a.matrix(n, kv);
            v = a.matrix(n, kv);
            att = a.floats(Attention.attSize(b, c.totalQueryHeads(), t));
            attOut = a.expertMatrix(n, c.nAtt(), headW);
            attGated = c.nAtt() > 1 ? a.expertMatrix(n, c.nAtt(), headW) : attOut;
            attRouter = c.nAtt() > 1 ? new RouterActs(c, n, c.nAtt(), a) : null;
            mlpRouter = c.nFfd() > 1 ? new RouterActs(c, n, c.nFfd(), a) : null;
            if (sparseMlp) {
                sparse = new SparseActs(c, n, a);
                mlpPre = mlpAct = mlpGated = null;
            } else {
                sparse = null;
                mlpPre = a.matrix(n, c.totalMlpWidth());
                mlpAct = a.expertMatrix(n, c.nFfd(), c.dFfd());
                mlpGated = c.nFfd() > 1 ? a.expertMatrix(n, c.nFfd(), c.dFfd()) : mlpAct;
            }
        }
    }

    /** A router's activations ({@link Routing.Buffers}: MLP-router hidden [N, R], logits and S [N, E]), log S [N, E] and p̄ [E]. */
    static final class RouterActs {
        final int experts;
        final Routing.Buffers acts;
        final float[] logProbs;
        final double[] pBar;
        /** H(e) and H(e|x) of the last forward. */
        double marginalEntropy, conditionalEntropy;

        RouterActs(ModelConfig c, long n, int experts, ArrayAllocator a) {
            this.experts = experts;
            boolean mlp = c.router() == ModelConfig.RouterKind.MLP;
            F32Tensor logits = a.matrix(n, experts), probs = a.matrix(n, experts);
            logProbs = a.floats(n, experts);
            F32Tensor hiddenPre = mlp ? a.matrix(n, c.routerHiddenSize()) : null;
            F32Tensor hiddenAct = mlp ? a.matrix(n, c.routerHiddenSize()) : null;
            acts = new Routing.Buffers(hiddenPre, hiddenAct, logits, probs);
            pBar = a.doubles(experts);
        }

        /** S [N, E]. */
        float[] probs() {
            return acts.probs().array();
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
        final F32Tensor in, pre, act, out;

        SparseActs(ModelConfig c, long n, ArrayAllocator a) {
            k = c.trainingTopK();
            long rows = Math.multiplyExact(n, k);
            chosen = a.ints(rows);
            rowOfSlot = a.ints(rows);
            counts = a.ints(c.nFfd());
            gate = a.floats(rows);
            a.add(ExpertGroups.bytes(c.nFfd(), rows), rows);
            groups = a.allocates() ? new ExpertGroups(c.nFfd(), (int) rows) : null;
            in = a.matrix(rows, c.dEmb());
            pre = a.matrix(rows, c.dFfd());
            act = a.matrix(rows, c.dFfd());
            out = a.matrix(rows, c.dEmb());
        }
    }

    /** Gradient scratch shared by all layers during backward. */
    static final class Scratch {
        /** ∂L/∂(residual stream), ∂L/∂(a norm's output), ∂L/∂(final norm's output) [N, d]. */
        final F32Tensor dResid, dLn, dLnf;
        final F32Tensor dQ, dK, dV, dAttOut;
        /** Dense MLP: ∂L/∂(activation) [N, F] in expert blocks, ∂L/∂(pre-activation) [N, F]. */
        final F32Tensor dMlpAct, dMlpPre;
        /** Sparse MLP, the same memory as grouped rows [R, D_ffd]; and the rows' output and input gradients [R, d]. */
        final F32Tensor dSparseAct, dSparsePre, dSparseOut, dSparseIn;
        /** The routers' gradients (∂L/∂S, ∂L/∂logits, the MLP router's hidden), one memory at each router's width. */
        final Routing.Buffers dAttRouter, dMlpRouter;
        final float[] attention;

        Scratch(ModelConfig c, long n, int b, int t, ArrayAllocator a) {
            long d = c.dEmb(), kv = (long) c.nKv() * c.dAtt(), headW = (long) c.nHead() * c.dAtt();
            dResid = a.matrix(n, d);
            dLn = a.matrix(n, d);
            dLnf = a.matrix(n, d);
            dQ = a.matrix(n, c.nAtt() * headW);
            dK = a.matrix(n, kv);
            dV = a.matrix(n, kv);
            dAttOut = a.expertMatrix(n, c.nAtt(), headW);
            long f = c.totalMlpWidth(), sparseRows = Math.multiplyExact(n, c.trainingTopK());
            long mlpFloats = Math.max(Math.multiplyExact(n, f), Math.multiplyExact(sparseRows, c.dFfd()));
            float[] mlpAct = a.floats(mlpFloats), mlpPre = a.floats(mlpFloats);
            boolean sparse = c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K;
            dMlpAct = view(a, mlpAct, n, f, c.nFfd());
            dMlpPre = view(a, mlpPre, n, f, 1);
            dSparseAct = sparse ? view(a, mlpAct, sparseRows, c.dFfd(), 1) : null;
            dSparsePre = sparse ? view(a, mlpPre, sparseRows, c.dFfd(), 1) : null;
            int e = Math.max(c.nAtt(), c.nFfd());
            float[] dProbs = a.floats(n, e), dLogits = a.floats(n, e);
            boolean mlp = c.router() == ModelConfig.RouterKind.MLP;
            float[] dHidden = mlp ? a.floats(n, c.routerHiddenSize()) : null;
            float[] dHiddenPre = mlp ? a.floats(n, c.routerHiddenSize()) : null;
            dAttRouter = routerGrads(a, n, c.nAtt(), c.routerHiddenSize(), dHiddenPre, dHidden, dLogits, dProbs);
            dMlpRouter = routerGrads(a, n, c.nFfd(), c.routerHiddenSize(), dHiddenPre, dHidden, dLogits, dProbs);
            attention = a.floats(Math.max(Attention.backwardScratchSize(b, t, c.nKv(), c.dAtt()),
                    Attention.forwardScratchSize(b, t, c.nKv(), c.dAtt())));
            dSparseOut = sparse ? a.matrix(sparseRows, d) : null;
            dSparseIn = sparse ? a.matrix(sparseRows, d) : null;
        }

        private static Routing.Buffers routerGrads(ArrayAllocator a, long n, int experts, int hidden, float[] dHiddenPre,
                                                   float[] dHidden, float[] dLogits, float[] dProbs) {
            if (!a.allocates()) return null;
            return new Routing.Buffers(dHiddenPre == null ? null : F32Tensor.of(dHiddenPre, (int) n, hidden),
                    dHidden == null ? null : F32Tensor.of(dHidden, (int) n, hidden),
                    F32Tensor.of(dLogits, (int) n, experts), F32Tensor.of(dProbs, (int) n, experts));
        }
    }

    /**
     * {@code [rows, cols]} at the start of {@code array} (a memory several views share), in
     * {@code experts} column blocks; null from a counter.
     */
    private static F32Tensor view(ArrayAllocator a, float[] array, long rows, long cols, int experts) {
        return a.allocates() ? F32Tensor.of(array, (int) rows, (int) cols).expertColumns(experts) : null;
    }

    final int batch, seqLen, tokens;
    final Layer[] layers;
    /** Final residual [N, d], final norm output [N, d] and its rstd [N], logits [N, V] (dlogits in backward), per-token loss [N]. */
    final F32Tensor residFinal, lnf, logits;
    final float[] rstdf, losses;
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
        residFinal = a.matrix(n, c.dEmb());
        lnf = a.matrix(n, c.dEmb());
        rstdf = a.floats(n);
        logits = a.matrix(n, c.vocabSize());
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
