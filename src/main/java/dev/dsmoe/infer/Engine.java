package dev.dsmoe.infer;

import dev.dsmoe.kernels.CachedAttention;
import dev.dsmoe.kernels.Embedding;
import dev.dsmoe.kernels.ExpertGroups;
import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.kernels.Gating;
import dev.dsmoe.kernels.Gelu;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Matmul;
import dev.dsmoe.kernels.RmsNorm;
import dev.dsmoe.kernels.Rope;
import dev.dsmoe.kernels.Routing;
import dev.dsmoe.kernels.TensorView;
import dev.dsmoe.model.ArrayAllocator;
import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.util.Arrays;
import java.util.Objects;

/**
 * Sparse inference over one sequence: batched prefill, token-by-token decode with a
 * {@link KvCache}, whole-sequence scoring, with the experts of every router chosen by an
 * {@link ExpertSelection}.
 *
 * <p>Per layer, for the {@code m} tokens of a step (a prefill chunk, or one decoded token) at
 * positions {@code p0 .. p0+m-1}:
 * <pre>
 *   h        = RMSNorm(x)
 *   K, V     = h·Wkᵀ, h·Wvᵀ  -> cache rows p0.., K rotated (RoPE)      shared by all experts
 *   S        = softmax(router(h)); A = selected experts (per token)
 *   x       += Σ_{i∈A} S_i · Attn(RoPE(h·Wq_iᵀ), cache) · Wo_iᵀ
 *   h        = RMSNorm(x)
 *   x       += Σ_{i∈A'} S'_i · GELU(h·W1_iᵀ) · W2_iᵀ
 * </pre>
 * and {@code logits = RMSNorm(x)·E_outᵀ}. Experts run grouped (ScatterMoE): the step's
 * (token, expert) pairs are sorted once by expert, each expert does one product over its rows,
 * and the outputs are scatter-added with their gates. A single token (decode) reads only the
 * selected experts' weights: one pass over them for the input products and one for the output
 * products, the gates applied to the inputs of the latter ({@code Σ W_i (S_i h_i) = Σ S_i W_i h_i}).
 * The router, the products ({@link Matmul}: the mat-vec for a few rows, GEMM in the weights'
 * format for more) and the gated scatter are the kernels training uses too.
 *
 * <p>All working memory is sized at construction for {@code chunk} tokens; prefill longer than
 * that runs chunk by chunk (threshold-top-k averages its count over each chunk). The decode step
 * allocates no arrays. Not thread-safe: one engine per sequence (engines may share a model).
 */
public final class Engine {

    /** Default prefill chunk (tokens per batched step). */
    public static final int DEFAULT_CHUNK = 128;

    private final InferenceModel model;
    private final ModelConfig c;
    private final KvCache cache;
    private final Rope rope;
    private final Matmul mm = Matmul.forInference();
    private final int chunk, d, nAtt, nHead, nKv, dAtt, headW, kvW, nFfd, dFfd, vocab, numLayers;
    private final int[] kvHeadOf;
    private final float eps;
    private ExpertSelection selection;

    // Working memory for up to `chunk` tokens: residual stream and norm output [chunk, d]; grouped
    // rows [slots, d] (gathered inputs, expert outputs); queries and attention outputs
    // [chunk·N_att, N_head·D_att]; MLP hidden rows [chunk·N_ffd, D_ffd]; logits [1 or chunk, V].
    private final F32Tensor x, ln, in, q, att, out, hidden, lastLogits;
    private F32Tensor chunkLogits;
    /** The routers' hidden layer, logits and probabilities, at the attention and the MLP router's width (one memory). */
    private final Routing.Buffers attRouting, mlpRouting;
    /** The KV cache's rows of each layer, as views. */
    private final F32Tensor[] keys, values;
    private final float[] gates;
    private final int[] chosen, rowOfSlot, rowExpert, rowPos;
    private final ExpertGroups attGroups, mlpGroups;

    /** Sees each router's choice in a step: {@code chosen[t*width + j]}, an expert or -1. */
    interface RouteObserver {
        void routed(int layer, boolean attention, int[] chosen, int m, int width);
    }

    /** Null except in tests: they learn here which experts each step left out (the selection, before grouping). */
    RouteObserver routeObserver;

    // Statistics since the last reset.
    private final long[] attActive, mlpActive;
    private long routedTokens, prefillTokens, prefillNanos, decodeTokens, decodeNanos;

    /** An engine with the model's default selection, the full context and the default chunk. */
    public Engine(InferenceModel model) {
        this(model, ExpertSelection.defaultFor(model.config()), model.config().maxPositions(), DEFAULT_CHUNK);
    }

    public Engine(InferenceModel model, ExpertSelection selection) {
        this(model, selection, model.config().maxPositions(), DEFAULT_CHUNK);
    }

    /**
     * @param contextLength positions the KV cache holds, at most {@code max_position_embeddings}
     * @param chunk         tokens per batched prefill step
     */
    public Engine(InferenceModel model, ExpertSelection selection, int contextLength, int chunk) {
        this(Objects.requireNonNull(model, "model"), model.config(), contextLength, chunk,
                ArrayAllocator.allocating("lower the context or the prefill chunk"));
        setSelection(selection);
    }

    /**
     * Sizes everything through {@code a}; with a counting allocator (and no model) it only adds
     * up what the real constructor allocates, for {@link #footprint}.
     */
    private Engine(InferenceModel model, ModelConfig c, int contextLength, int chunk, ArrayAllocator a) {
        this.model = model;
        this.c = c;
        if (contextLength < 1 || contextLength > c.maxPositions()) {
            throw new IllegalArgumentException("context length " + contextLength + " must be between 1 and max_position_embeddings ("
                    + c.maxPositions() + ")");
        }
        if (chunk < 1) throw new IllegalArgumentException("prefill chunk must be >= 1, got " + chunk);
        this.chunk = chunk;
        d = c.dEmb();
        nAtt = c.nAtt();
        nHead = c.nHead();
        nKv = c.nKv();
        dAtt = c.dAtt();
        headW = nHead * dAtt;
        kvW = nKv * dAtt;
        nFfd = c.nFfd();
        dFfd = c.dFfd();
        vocab = c.vocabSize();
        numLayers = c.numLayers();
        eps = (float) c.rmsNormEps();
        kvHeadOf = a.ints(nHead);
        for (int j = 0; j < kvHeadOf.length; j++) kvHeadOf[j] = j * nKv / nHead;
        // The cache and the RoPE tables are reported as parts of their own (footprint).
        cache = a.allocates() ? new KvCache(numLayers, contextLength, kvW) : null;
        rope = a.allocates() ? new Rope(dAtt, contextLength, c.ropeTheta()) : null; // positions stay below the cache's capacity
        int nMax = Math.max(nAtt, nFfd);
        long slots = (long) chunk * nMax;
        x = a.matrix(chunk, d);
        ln = a.matrix(chunk, d);
        boolean mlpRouter = c.router() == ModelConfig.RouterKind.MLP && nMax > 1;
        int h = c.routerHiddenSize();
        float[] routerHidden = a.floats(mlpRouter ? (long) chunk * h : 0), routerLogits = a.floats(slots), probs = a.floats(slots);
        attRouting = routing(a, mlpRouter, routerHidden, h, routerLogits, probs, nAtt);
        mlpRouting = routing(a, mlpRouter, routerHidden, h, routerLogits, probs, nFfd);
        gates = a.floats(slots);
        chosen = a.ints(slots);
        rowOfSlot = a.ints(slots);
        rowExpert = a.ints(slots);
        rowPos = a.ints(slots);
        in = a.matrix(slots, d);
        q = a.matrix((long) chunk * nAtt, headW);
        att = a.matrix((long) chunk * nAtt, headW);
        out = a.matrix(slots, d);
        hidden = a.matrix((long) chunk * nFfd, dFfd);
        lastLogits = a.matrix(1, vocab);
        keys = new F32Tensor[a.allocates() ? numLayers : 0];
        values = new F32Tensor[keys.length];
        for (int l = 0; l < keys.length; l++) {
            keys[l] = F32Tensor.of(cache.keys(l), contextLength, kvW);
            values[l] = F32Tensor.of(cache.values(l), contextLength, kvW);
        }
        a.add(ExpertGroups.bytes(nAtt, (long) chunk * nAtt) + ExpertGroups.bytes(nFfd, (long) chunk * nFfd), slots);
        attGroups = a.allocates() ? new ExpertGroups(nAtt, chunk * nAtt) : null;
        mlpGroups = a.allocates() ? new ExpertGroups(nFfd, chunk * nFfd) : null;
        attActive = a.longs(numLayers);
        mlpActive = a.longs(numLayers);
    }

    /** One router's buffers at its width {@code n}, over memory both routers share; the hidden layer's GELU runs in place. */
    private Routing.Buffers routing(ArrayAllocator a, boolean mlpRouter, float[] hidden, int h, float[] logits, float[] probs,
                                    int n) {
        if (!a.allocates()) return null;
        F32Tensor hv = mlpRouter ? F32Tensor.of(hidden, chunk, h) : null;
        return new Routing.Buffers(hv, hv, F32Tensor.of(logits, chunk, n), F32Tensor.of(probs, chunk, n));
    }

    /**
     * What {@code new Engine(model-of-c, selection, contextLength, chunk)} holds on the heap once
     * it has run, with weights of {@code dtype}: its buffers (the constructor's, counted, and the
     * logits and GEMM scratch that scoring adds on first use), the KV cache and the RoPE tables.
     * The model's weights are not included ({@link InferenceModel#footprint}).
     */
    public static Footprint footprint(ModelConfig c, MatVec.DType dtype, int contextLength, int chunk) {
        ArrayAllocator a = ArrayAllocator.counting();
        try {
            new Engine(null, c, contextLength, chunk, a);
            a.floats(chunk, c.vocabSize()); // chunkLogits, made by the first scoring step
            a.floats(InferenceModel.gemmScratchFloats(c, dtype));
        } catch (ArithmeticException e) {
            return Footprint.heap("inference buffers", Long.MAX_VALUE, Long.MAX_VALUE); // past a long
        }
        int kvW = c.nKv() * c.dAtt(); // an int: ModelConfig checks it
        long ropeFloats = Rope.tableFloats(c.dAtt(), contextLength);
        return a.footprint("inference buffers")
                .plus(Footprint.heap("KV cache", KvCache.bytes(c.numLayers(), contextLength, kvW), (long) contextLength * kvW))
                .plus(Footprint.heap("RoPE tables", Float.BYTES * ropeFloats, ropeFloats / 2));
    }

    public InferenceModel model() {
        return model;
    }

    public ModelConfig config() {
        return c;
    }

    public KvCache cache() {
        return cache;
    }

    public ExpertSelection selection() {
        return selection;
    }

    /** Changes the selection for later steps (checked against the model). */
    public void setSelection(ExpertSelection selection) {
        this.selection = Objects.requireNonNull(selection, "selection").check(c);
    }

    /** Positions the context holds. */
    public int contextLength() {
        return cache.capacity();
    }

    /** Tokens in the cache (the position the next token gets). */
    public int position() {
        return cache.length();
    }

    /** Starts a new sequence (empties the cache; statistics are kept). */
    public void reset() {
        cache.reset();
    }

    // ------------------------------------------------------------------ public steps

    /**
     * Starts a new sequence with {@code prompt} and returns the logits {@code [V]} of its last
     * position (the engine's buffer: valid until the next step).
     */
    public float[] prefill(int[] prompt) {
        checkTokens(prompt, 0);
        reset();
        return append(prompt);
    }

    /** Appends {@code tokens} to the current sequence; returns the logits of the last one. */
    public float[] append(int[] tokens) {
        checkTokens(tokens, cache.length());
        long t0 = System.nanoTime();
        for (int s = 0; s < tokens.length; s += chunk) {
            int m = Math.min(chunk, tokens.length - s);
            step(tokens, s, m, s + m == tokens.length ? Logits.LAST : Logits.NONE);
        }
        prefillNanos += System.nanoTime() - t0;
        prefillTokens += tokens.length;
        return lastLogits.array();
    }

    /** Feeds one token at the next position and returns the next-token logits {@code [V]} (engine's buffer). */
    public float[] decode(int token) {
        if (cache.length() >= cache.capacity()) {
            throw new IllegalStateException("the context is full: " + cache.length() + " of " + cache.capacity()
                    + " positions used");
        }
        checkToken(token, 0);
        long t0 = System.nanoTime();
        step1(token);
        decodeNanos += System.nanoTime() - t0;
        decodeTokens++;
        return lastLogits.array();
    }

    /**
     * Logits of every position of a new sequence, {@code [T, V]} row-major in a new array (for
     * evaluation and tests). Leaves the sequence in the cache.
     */
    public float[] forwardAll(int[] tokens) {
        checkTokens(tokens, 0);
        reset();
        float[] all = new float[Math.multiplyExact(tokens.length, vocab)];
        long t0 = System.nanoTime();
        for (int s = 0; s < tokens.length; s += chunk) {
            int m = Math.min(chunk, tokens.length - s);
            step(tokens, s, m, Logits.ALL);
            System.arraycopy(chunkLogits.array(), 0, all, s * vocab, m * vocab);
        }
        prefillNanos += System.nanoTime() - t0;
        prefillTokens += tokens.length;
        return all;
    }

    /**
     * Scores a sequence under the current selection: {@code result[i] = log p(tokens[i+1] |
     * tokens[0..i])} for {@code i < T-1} (natural log; perplexity is {@code exp(-mean)}).
     * Starts a new sequence.
     */
    public double[] score(int[] tokens) {
        checkTokens(tokens, 0);
        reset();
        double[] lp = new double[tokens.length - 1];
        long t0 = System.nanoTime();
        for (int s = 0; s < tokens.length; s += chunk) {
            int m = Math.min(chunk, tokens.length - s);
            step(tokens, s, m, Logits.ALL);
            for (int t = 0; t < m && s + t + 1 < tokens.length; t++) {
                lp[s + t] = logProb(chunkLogits.array(), t * vocab, tokens[s + t + 1]);
            }
        }
        prefillNanos += System.nanoTime() - t0;
        prefillTokens += tokens.length;
        return lp;
    }

    private double logProb(float[] logits, int off, int target) {
        double max = Double.NEGATIVE_INFINITY;
        for (int v = 0; v < vocab; v++) max = Math.max(max, logits[off + v]);
        double sum = 0;
        for (int v = 0; v < vocab; v++) sum += Math.exp(logits[off + v] - max);
        return logits[off + target] - max - Math.log(sum);
    }

    private void checkTokens(int[] tokens, int cached) {
        if (tokens == null || tokens.length == 0) throw new IllegalArgumentException("empty token sequence");
        if ((long) cached + tokens.length > cache.capacity()) {
            throw new IllegalArgumentException("a sequence of " + tokens.length + " tokens"
                    + (cached > 0 ? " after " + cached + " cached positions" : "") + " is longer than the context of "
                    + cache.capacity() + " positions (max_position_embeddings " + c.maxPositions() + ")");
        }
        for (int i = 0; i < tokens.length; i++) checkToken(tokens[i], i);
    }

    private void checkToken(int token, int at) {
        if (token < 0 || token >= vocab) {
            throw new IllegalArgumentException("token id " + token + " at position " + at
                    + " is outside the vocabulary [0, " + vocab + ")");
        }
    }

    // ------------------------------------------------------------------ the forward

    private enum Logits { NONE, LAST, ALL }

    private void step1(int token) {
        model.embed().copyRow(token, x.array(), 0);
        forwardLayers(1);
        finalLogits(1, Logits.LAST);
    }

    private void step(int[] tokens, int off, int m, Logits logits) {
        Embedding.forward(model.embed(), tokens, off, m, x);
        forwardLayers(m);
        finalLogits(m, logits);
    }

    private void forwardLayers(int m) {
        int p0 = cache.length();
        for (int l = 0; l < numLayers; l++) layer(l, m, p0);
        cache.advance(m);
        routedTokens += m;
    }

    private void finalLogits(int m, Logits logits) {
        TensorView e = model.output();
        switch (logits) {
            case NONE -> { }
            case LAST -> {
                RmsNorm.forward(x, m - 1, model.finalNorm(), ln, null, 1, eps);
                mm.forward(lastLogits, ln, 1, e, false);
            }
            case ALL -> {
                if (chunkLogits == null) chunkLogits = F32Tensor.of(new float[Math.multiplyExact(chunk, vocab)], chunk, vocab); // counted in footprint
                RmsNorm.forward(x, model.finalNorm(), ln, null, m, eps);
                mm.forward(chunkLogits, ln, m, e, false);
                System.arraycopy(chunkLogits.array(), (m - 1) * vocab, lastLogits.array(), 0, vocab);
            }
        }
    }

    private void layer(int l, int m, int p0) {
        ParamLayout.Layer<TensorView> w = model.layer(l);

        // Mixture of attention heads over the shared, cached K/V heads.
        RmsNorm.forward(x, w.inputNorm(), ln, null, m, eps);
        mm.forward(keys[l], p0, ln, 0, m, w.kProj(), false);
        mm.forward(values[l], p0, ln, 0, m, w.vProj(), false);
        rope.forward(keys[l].array(), p0 * kvW, kvW, 1, m, nKv, p0);
        int width = route(l, true, w.attnRouter(), attRouting, selection.attention(), m, attGroups);
        attActive[l] += attGroups.rows();
        expertInputs(w.qProj(), attGroups, m, q);
        int rows = attGroups.rows();
        for (int r = 0; r < rows; r++) rowPos[r] = p0 + attGroups.token(r);
        rotateQueries(m, p0, rows);
        CachedAttention.forward(q.array(), 0, headW, rows, nHead, kvHeadOf, keys[l].array(), values[l].array(), 0, kvW, dAtt,
                rowPos, 0, att.array(), 0, headW);
        expertOutputs(w.oProj(), attGroups, width, m, att);

        // Mixture of MLP experts.
        RmsNorm.forward(x, w.postAttnNorm(), ln, null, m, eps);
        width = route(l, false, w.mlpRouter(), mlpRouting, selection.mlp(), m, mlpGroups);
        mlpActive[l] += mlpGroups.rows();
        expertInputs(w.upProj(), mlpGroups, m, hidden);
        Gelu.forward(hidden.array(), 0, hidden.array(), 0, mlpGroups.rows() * dFfd);
        expertOutputs(w.downProj(), mlpGroups, width, m, hidden);
    }

    /** RoPE on the grouped query rows: one call per expert whose rows are all m tokens, else per row. */
    private void rotateQueries(int m, int p0, int rows) {
        float[] qa = q.array();
        if (m == 1) {
            rope.forward(qa, 0, headW, rows, 1, nHead, p0);
            return;
        }
        for (int e = 0; e < nAtt; e++) {
            int cnt = attGroups.count(e), r0 = attGroups.start(e);
            if (cnt == m) {
                rope.forward(qa, r0 * headW, headW, 1, m, nHead, p0);
            } else {
                for (int r = r0; r < r0 + cnt; r++) rope.forward(qa, r * headW, headW, 1, 1, nHead, rowPos[r]);
            }
        }
    }

    /**
     * Router probabilities of the step's tokens (from {@code ln}), the selection, and the
     * grouping by expert; returns the slot width. A layer type with one expert has no router:
     * every token gets expert 0 with gate 1.
     */
    private int route(int layer, boolean attention, ParamLayout.Router<TensorView> router, Routing.Buffers buf,
                      ExpertSelection.Rule rule, int m, ExpertGroups groups) {
        int width;
        if (router == null) {
            Arrays.fill(chosen, 0, m, 0);
            Arrays.fill(gates, 0, m, 1f);
            width = 1;
        } else {
            Routing.forward(mm, router.hidden(), router.out(), ln, m, buf);
            width = rule.select(buf.probs().array(), m, router.out().rows(), chosen, gates);
        }
        if (routeObserver != null) routeObserver.routed(layer, attention, chosen, m, width);
        groups.group(chosen, m, width);
        for (int r = 0; r < groups.rows(); r++) { // ExpertGroups.rowsOfSlots, and each row's expert, in one pass
            int slot = groups.slot(r);
            rowOfSlot[slot] = r;
            rowExpert[r] = chosen[slot];
        }
        return width;
    }

    /** {@code dst[r] = ln[token(r)] · W_{expert(r)}ᵀ} for every grouped row. */
    private void expertInputs(TensorView w, ExpertGroups groups, int m, F32Tensor dst) {
        if (m == 1) {
            mm.selected(dst, ln, 0, w, rowExpert, groups.rows());
            return;
        }
        groups.gather(ln.array(), d, in.array());
        mm.grouped(groups, dst, in, w);
    }

    /** {@code x[t] += Σ_slots gate · (src[row] · W_{expert(row)}ᵀ)}: the output products and the gated scatter. */
    private void expertOutputs(TensorView w, ExpertGroups groups, int width, int m, F32Tensor src) {
        if (m == 1) {
            Gating.scaleRows(src, groups, gates);
            mm.selectedSum(x, 0, src, w, rowExpert, groups.rows(), true);
            return;
        }
        mm.grouped(groups, out, src, w);
        Gating.scatter(out, rowOfSlot, chosen, gates, m, width, x);
    }

    // ------------------------------------------------------------------ statistics

    /** Statistics since construction or the last {@link #resetStats()}. */
    public InferenceStats stats() {
        return InferenceStats.of(c, model.counts(), selection.toString(), attActive, mlpActive, routedTokens, prefillTokens, prefillNanos,
                decodeTokens, decodeNanos);
    }

    /** Zeroes the statistics. */
    public void resetStats() {
        Arrays.fill(attActive, 0);
        Arrays.fill(mlpActive, 0);
        routedTokens = prefillTokens = prefillNanos = decodeTokens = decodeNanos = 0;
    }
}
