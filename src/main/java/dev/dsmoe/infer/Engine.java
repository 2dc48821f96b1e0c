package dev.dsmoe.infer;

import dev.dsmoe.kernels.CachedAttention;
import dev.dsmoe.kernels.ExpertGroups;
import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.kernels.Gating;
import dev.dsmoe.kernels.Gelu;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Matmul;
import dev.dsmoe.kernels.OneDnn;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.kernels.PromptAttention;
import dev.dsmoe.kernels.RmsNorm;
import dev.dsmoe.kernels.Rope;
import dev.dsmoe.kernels.Routing;
import dev.dsmoe.kernels.TensorView;
import dev.dsmoe.model.ArrayAllocator;
import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Sparse inference over many sequences at once: a step feeds each of several {@link Sequence}s
 * its next tokens (one decoded token, or a chunk of its prompt), each at its own position, with
 * its own KV cache blocks and its own expert selection, and gives the logits each asked for. The
 * single-sequence API ({@link #prefill}, {@link #decode}, {@link #score}...) is the same step
 * with one sequence.
 *
 * <p>Per layer, for the {@code T} tokens of a step, token t of a sequence at position p_t:
 * <pre>
 *   h        = RMSNorm(x)
 *   K, V     = h·Wkᵀ, h·Wvᵀ  -> the sequence's cache at p_t, K rotated (RoPE)   shared by all experts
 *   S        = softmax(router(h)); A = selected experts (per token, by its sequence's rule)
 *   x       += Σ_{i∈A} Attn(RoPE(h·Wq_iᵀ), its sequence's cache) · S_i · Wo_iᵀ
 *   h        = RMSNorm(x)
 *   x       += Σ_{i∈A'} S'_i · GELU(h·W1_iᵀ) · W2_iᵀ
 * </pre>
 * and {@code logits = RMSNorm(x)·E_outᵀ}. Experts run grouped (ScatterMoE): the step's (token,
 * expert) pairs, of all its sequences, are sorted once by expert, so each selected expert's
 * weights are read once per step for every token that chose it; the gates scale the inputs of
 * the output products, and each token's expert outputs are added up in expert order.
 *
 * <p>A sequence's results do not depend on what else is in the step: every product a sequence
 * makes alone is made the same way in a batch. Rows that would go through the mat-vec alone
 * (a sequence's piece of at most {@link Matmul#MATVEC_MAX_ROWS} tokens, or an expert's run of
 * at most {@link #EXPERT_SMALL} rows of one sequence) share one mat-vec with the other
 * sequences' such rows (the mat-vec's result for a row does not depend on the others); larger
 * pieces and runs get a GEMM of their own rows, as alone. Routing (threshold-top-k's K included) is per sequence. So
 * greedy decoding gives the same tokens alone and in any batch, given the same prompt chunks.
 *
 * <p>All working memory is sized at construction for {@code maxTokens} tokens per step; the KV
 * cache ({@link KvCache}) hands out blocks as sequences grow. The decode step allocates no
 * arrays. Not thread-safe: one thread drives an engine (engines may share a model).
 */
public final class Engine {

    /**
     * Default prefill chunk (prompt tokens per step), of the single-sequence API and the server
     * alike (their greedy outputs agree only with equal chunks). Each weight read during prefill
     * serves the chunk's rows, and DS-MoE's experts about a third of them: measured at the 1B
     * shapes in q8_0 (prompt 512), 512 against 128 prefilled dense-1b at 76 against 67 tok/s and
     * dsmoe-1b at 101 against 77. llama.cpp's micro-batch is 512 too.
     */
    public static final int DEFAULT_CHUNK = 512;

    /** Which logits a sequence's piece of a step asks for. */
    public enum Logits {
        /** none (a prompt chunk that is not the last) */
        NONE,
        /** its last token's (decode, a prompt's last chunk) */
        LAST,
        /** every token's (scoring) */
        ALL
    }

    /** Pieces up to this many tokens, and expert runs up to this many rows, go through the mat-vec. */
    private static final int SMALL = Matmul.MATVEC_MAX_ROWS;
    /**
     * Rows of one sequence up to which an expert's run goes through the mat-vec (tiles of 4 weight
     * rows by 4 inputs, the weight read in place) rather than a GEMM of its own. An expert weight
     * is small (dsmoe-1b: [256 x 2048]) and a prefill chunk gives it few rows (9/32 of 128), so the
     * tiles might beat a GEMM that packs the weight for 36 rows; measured, they do not by much
     * (dsmoe-1b f32 prefill 89 tok/s at 64 against 85 at 8), so the default stays
     * {@link Matmul#MATVEC_MAX_ROWS}. Settable for benchmarks ({@code -Ddsmoe.expertMatVecRows});
     * a sequence's products depend only on its own run lengths either way, so batch invariance
     * holds for any value.
     */
    static final int EXPERT_SMALL = Integer.getInteger("dsmoe.expertMatVecRows", SMALL);
    /**
     * Pieces up to this many tokens (decode, short prompt chunks) have a mixture's output
     * products summed straight into their residual rows ({@link Matmul#pieceSums}): one
     * accumulator per output over all of a token's experts, where a row per expert, then the
     * scatter-add, read expert rows of 128 (MoA) or 256 (MLP) weights each ending in its own lane
     * sum and store. Every such piece goes through the mat-vec anyway (at most {@link #SMALL}
     * tokens, no run above {@link #EXPERT_SMALL} rows), and whether a token's pieces are summed
     * so depends on its own piece's length only: batch invariance holds.
     */
    private static final int FUSED = Math.min(SMALL, EXPERT_SMALL);

    private final InferenceModel model;
    private final ModelConfig c;
    private final KvCache kv;
    private final Rope rope;
    private final Matmul mm = Matmul.forInference(), mmVec = Matmul.matVecOnly();
    private final int maxTokens, contextLength, d, nAtt, nHead, nKv, dAtt, headW, kvW, nFfd, dFfd, vocab, numLayers;
    private final int[] kvHeadOf;
    private final float eps;

    // Working memory for up to maxTokens tokens: residual stream and norm output [T, d]; new keys
    // and values [T, N_kv·D_att]; grouped rows [slots, d] (gathered inputs, expert outputs);
    // queries and attention outputs [T·N_att, N_head·D_att]; MLP hidden rows [T·N_ffd, D_ffd];
    // logits [1 or T, V]; next-token logits [1, V] for the single-sequence API.
    private final F32Tensor x, ln, kNew, vNew, in, q, att, out, hidden, lastLogits;
    /** {@code out}'s memory as rows of all experts' outputs side by side ({@link #stackedProducts}); null where it does not fit. */
    private final F32Tensor stackedQueries, stackedHidden;
    // A decode step's products of the normed residual in one pass (Matmul.forwardShared), per layer:
    // the key and value projections and the attention router's hidden layer (sharedBase[l] of them),
    // then the stacked queries where every token takes every attention expert; their outputs.
    private final TensorView[][] sharedWeights, sharedOutputs;
    private final int[] sharedBase, sharedOff, sharedLd;
    private final float[][] sharedY;
    // This step's shared-input pass (sharedInputsOfStep): 0 none, 1 without the queries, 2 with them;
    // this layer's: the attention router's hidden rows and the stacked queries made in that pass.
    private int stepShared;
    private boolean hiddenDone, queriesDone;
    /** {@code -Ddsmoe.sharedInputs=false} (DSMOE_JAVA_OPTS) makes decode's K, V, router and query products one by one, to measure the pass. */
    private static final boolean SHARED_INPUTS = Boolean.parseBoolean(System.getProperty("dsmoe.sharedInputs", "true"));
    private F32Tensor logits;
    /** The routers' hidden layer, logits and probabilities, at the attention and the MLP router's width (one memory). */
    private final Routing.Buffers attRouting, mlpRouting;
    private final float[] gates, seqGates;
    private final int[] tokenBuffer, chosen, seqChosen, rowPos, tokPos, tokEntry, segStart, segCount, segExpert, runStart, runCount, runExpert,
            pieceRow, pieceExpert, pieceSlot, slotRow, tokSlot, tokSkip, tokPrompt, runIn, srcRows, attRows;
    /** Each grouped attention row's block table (its sequence's). */
    private final float[][][] rowTables;
    private final ExpertGroups attGroups, mlpGroups;

    // The step being built: entry i feeds sequence eSeq[i] the tokens eTokens[i][eOff[i] ..
    // eOff[i]+eLen[i]) at rows eRow[i].., and gets its logits from row eLogitsRow[i].
    private final Sequence[] eSeq;
    private final int[][] eTokens;
    private final int[] eOff, eLen, eRow, eLogitsRow;
    /** Per entry, from {@link #markWholeEntries}: how many experts took all of a prompt chunk's tokens (-1: not such a chunk). */
    private final int[] eWhole;
    /** Per entry, from {@link #sideBySideProducts}: 1 where its attention outputs were summed side by side. */
    private final int[] eWide;
    private final Logits[] eLogits;
    private int entries, stepTokens, logitRows;

    /** Sees each router's choice in a step: {@code chosen[t*width + j]}, an expert or -1. */
    interface RouteObserver {
        void routed(int layer, boolean attention, int[] chosen, int m, int width);
    }

    /** Null except in tests: they learn here which experts each step left out (the selection, before grouping). */
    RouteObserver routeObserver;

    // The single-sequence API's sequence and selection.
    private Sequence single;
    private ExpertSelection selection;

    // Statistics since the last reset.
    private final long[] attActive, mlpActive;
    private long routedTokens, prefillTokens, prefillNanos, decodeTokens, decodeNanos;
    /** Per-{@link Phase} time while {@link #timePhases} is on, else null; the current phase's start. */
    private long[] phaseNanos;
    private long phaseStart;

    /** An engine with the model's default selection, the full context and the default chunk. */
    public Engine(InferenceModel model) {
        this(model, ExpertSelection.defaultFor(model.config()), model.config().maxPositions(), DEFAULT_CHUNK);
    }

    public Engine(InferenceModel model, ExpertSelection selection) {
        this(model, selection, model.config().maxPositions(), DEFAULT_CHUNK);
    }

    /**
     * An engine for one sequence at a time (the single-sequence API), its cache able to hold the
     * whole context.
     *
     * @param contextLength positions the sequence may fill, at most {@code max_position_embeddings}
     * @param chunk         tokens per prefill step
     */
    public Engine(InferenceModel model, ExpertSelection selection, int contextLength, int chunk) {
        this(Objects.requireNonNull(model, "model"), model.config(), contextLength, stepTokens(chunk, contextLength),
                singleSequenceBlocks(model.config(), contextLength), ArrayAllocator.allocating("lower the context or the prefill chunk"));
        setSelection(selection);
    }

    /**
     * An engine for many sequences: steps of up to {@code maxTokens} tokens in all, each sequence
     * up to {@code contextLength} positions, and a KV cache of at most {@code kvBlocks} blocks of
     * {@link KvCache#DEFAULT_BLOCK} positions shared by them (allocated as they grow).
     */
    public static Engine batched(InferenceModel model, int maxTokens, int contextLength, int kvBlocks) {
        Engine e = new Engine(Objects.requireNonNull(model, "model"), model.config(), contextLength, maxTokens, kvBlocks,
                ArrayAllocator.allocating("lower --max-batch, the context or the KV memory"));
        e.selection = ExpertSelection.defaultFor(model.config());
        return e;
    }

    private static int singleSequenceBlocks(ModelConfig c, int contextLength) {
        return Math.max(1, (contextLength + KvCache.DEFAULT_BLOCK - 1) / KvCache.DEFAULT_BLOCK);
    }

    /**
     * Sizes everything through {@code a}; with a counting allocator (and no model) it only adds
     * up what the real constructor allocates, for {@link #footprint}.
     */
    private Engine(InferenceModel model, ModelConfig c, int contextLength, int maxTokens, int kvBlocks, ArrayAllocator a) {
        this.model = model;
        this.c = c;
        if (contextLength < 1 || contextLength > c.maxPositions()) {
            throw new IllegalArgumentException("context length " + contextLength + " must be between 1 and max_position_embeddings ("
                    + c.maxPositions() + ")");
        }
        if (maxTokens < 1) throw new IllegalArgumentException("tokens per step (prefill chunk) must be >= 1, got " + maxTokens);
        if (kvBlocks < 1) throw new IllegalArgumentException("the KV cache needs at least one block, got " + kvBlocks);
        this.maxTokens = maxTokens;
        this.contextLength = contextLength;
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
        kv = a.allocates() ? new KvCache(numLayers, kvW, KvCache.DEFAULT_BLOCK, kvBlocks) : null;
        rope = a.allocates() ? new Rope(dAtt, contextLength, c.ropeTheta()) : null; // positions stay below the context
        int nMax = Math.max(nAtt, nFfd);
        long slots = (long) maxTokens * nMax;
        x = a.matrix(maxTokens, d);
        ln = a.matrix(maxTokens, d);
        kNew = a.matrix(maxTokens, kvW);
        vNew = a.matrix(maxTokens, kvW);
        boolean mlpRouter = c.router() == ModelConfig.RouterKind.MLP && nMax > 1;
        int h = c.routerHiddenSize();
        float[] routerHidden = a.floats(mlpRouter ? (long) maxTokens * h : 0), routerLogits = a.floats(slots), probs = a.floats(slots);
        attRouting = routing(a, mlpRouter, routerHidden, h, routerLogits, probs, nAtt);
        mlpRouting = routing(a, mlpRouter, routerHidden, h, routerLogits, probs, nFfd);
        gates = a.floats(slots);
        seqGates = a.floats(slots);
        chosen = a.ints(slots);
        seqChosen = a.ints(slots);
        rowPos = a.ints(slots);
        segStart = a.ints(slots);
        segCount = a.ints(slots);
        segExpert = a.ints(slots);
        runStart = a.ints(slots);
        runCount = a.ints(slots);
        runExpert = a.ints(slots);
        runIn = a.ints(slots);
        attRows = a.ints(slots);
        srcRows = a.ints(maxTokens + slots);
        pieceRow = a.ints(slots);
        pieceExpert = a.ints(slots);
        pieceSlot = a.ints(slots);
        slotRow = a.ints(maxTokens);
        tokSlot = a.ints(maxTokens);
        tokSkip = a.ints(maxTokens);
        tokPrompt = a.ints(maxTokens);
        tokenBuffer = a.ints(1);
        tokPos = a.ints(maxTokens);
        tokEntry = a.ints(maxTokens);
        in = a.matrix(slots, d);
        q = a.matrix((long) maxTokens * nAtt, headW);
        att = a.matrix((long) maxTokens * nAtt, headW);
        out = a.matrix(slots, d);
        hidden = a.matrix((long) maxTokens * nFfd, dFfd);
        stackedQueries = a.allocates() ? stacked(out, maxTokens, nAtt * headW) : null;
        stackedHidden = a.allocates() ? stacked(out, maxTokens, nFfd * dFfd) : null;
        lastLogits = a.matrix(1, vocab);
        logits = lastLogits;
        rowTables = new float[a.allocates() ? maxTokens * nAtt : 0][][];
        a.add(ExpertGroups.bytes(nAtt, (long) maxTokens * nAtt) + ExpertGroups.bytes(nFfd, (long) maxTokens * nFfd), slots);
        attGroups = a.allocates() ? new ExpertGroups(nAtt, maxTokens * nAtt) : null;
        mlpGroups = a.allocates() ? new ExpertGroups(nFfd, maxTokens * nFfd) : null;
        eSeq = new Sequence[a.allocates() ? maxTokens : 0]; // arrays of references: no payload counted
        eTokens = new int[eSeq.length][];
        eLogits = new Logits[eSeq.length];
        eOff = a.ints(maxTokens);
        eLen = a.ints(maxTokens);
        eRow = a.ints(maxTokens);
        eLogitsRow = a.ints(maxTokens);
        eWhole = a.ints(maxTokens);
        eWide = a.ints(maxTokens);
        attActive = a.longs(numLayers);
        mlpActive = a.longs(numLayers);
        int layers = a.allocates() ? numLayers : 0; // references to the model's weights and to buffers above: no payload
        sharedWeights = new TensorView[layers][];
        sharedOutputs = new TensorView[layers][];
        sharedBase = a.ints(numLayers);
        sharedOff = a.ints(4);
        sharedLd = a.ints(4);
        sharedY = new float[4][];
        for (int l = 0; l < layers; l++) {
            ParamLayout.Layer<TensorView> w = model.layer(l);
            List<TensorView> ws = new ArrayList<>(List.of(w.kProj(), w.vProj())), outs = new ArrayList<>(List.of(kNew, vNew));
            if (w.attnRouter() != null && w.attnRouter().hidden() != null) {
                ws.add(w.attnRouter().hidden());
                outs.add(attRouting.hiddenPre());
            }
            sharedBase[l] = ws.size();
            if (nAtt > 1 && stackedQueries != null && stackedQueries.cols() == w.qProj().rows()) {
                ws.add(w.qProj());
                outs.add(stackedQueries);
            }
            sharedWeights[l] = ws.toArray(TensorView[]::new);
            sharedOutputs[l] = outs.toArray(TensorView[]::new);
        }
    }

    /** {@code rows x cols} over the memory of {@code buffer} (a contiguous matrix), or null where it does not fit in it. */
    private static F32Tensor stacked(F32Tensor buffer, int rows, int cols) {
        boolean fits = buffer.ld() == buffer.cols() && (long) rows * cols <= (long) buffer.rows() * buffer.cols();
        return fits ? F32Tensor.of(buffer.array(), buffer.off(), rows, cols) : null;
    }

    /** One router's buffers at its width {@code n}, over memory both routers share; the hidden layer's GELU runs in place. */
    private Routing.Buffers routing(ArrayAllocator a, boolean mlpRouter, float[] hidden, int h, float[] logits, float[] probs,
                                    int n) {
        if (!a.allocates()) return null;
        F32Tensor hv = mlpRouter ? F32Tensor.of(hidden, maxTokens, h) : null;
        return new Routing.Buffers(hv, hv, F32Tensor.of(logits, maxTokens, n), F32Tensor.of(probs, maxTokens, n));
    }

    /**
     * What {@code new Engine(model-of-c, selection, contextLength, chunk)} holds on the heap once
     * it has run, with weights of {@code dtype}: its buffers (the constructor's, counted, and the
     * logits and GEMM scratch that scoring adds on first use), the KV cache filled to the context
     * and the RoPE tables. The model's weights are not included ({@link InferenceModel#footprint}).
     */
    public static Footprint footprint(ModelConfig c, MatVec.DType dtype, int contextLength, int chunk) {
        return footprint(c, dtype, contextLength, stepTokens(chunk, contextLength), singleSequenceBlocks(c, contextLength), false);
    }

    /** A single sequence's step holds at most its context: a chunk beyond it would only cost memory. */
    private static int stepTokens(int chunk, int contextLength) {
        return contextLength >= 1 ? Math.min(chunk, contextLength) : chunk;
    }

    /** The same for {@link #batched}{@code (model, maxTokens, contextLength, kvBlocks)}, its KV cache all allocated. */
    public static Footprint footprint(ModelConfig c, MatVec.DType dtype, int contextLength, int maxTokens, int kvBlocks) {
        return footprint(c, dtype, contextLength, maxTokens, kvBlocks, true);
    }

    private static Footprint footprint(ModelConfig c, MatVec.DType dtype, int contextLength, int maxTokens, int kvBlocks,
                                       boolean batched) {
        ArrayAllocator a = ArrayAllocator.counting();
        try {
            new Engine(null, c, contextLength, maxTokens, kvBlocks, a);
            a.floats(maxTokens, c.vocabSize()); // the logits of a step that asks for more than one row
            a.floats(InferenceModel.gemmScratchFloats(c, dtype));
            if (Parallel.threads() > 1) { // expert products spread over the threads, each with its own scratch
                long each = InferenceModel.expertGemmScratchFloats(c, dtype, batched);
                for (int t = 0; t < Parallel.threads(); t++) a.floats(each);
            }
            a.longs(2, c.numLayers()); // the single-sequence API's sequence: its statistics
        } catch (ArithmeticException e) {
            return Footprint.heap("inference buffers", Long.MAX_VALUE, Long.MAX_VALUE); // past a long
        }
        int kvW = c.nKv() * c.dAtt(); // an int: ModelConfig checks it
        long kvBytes;
        try {
            kvBytes = KvCache.bytes(c.numLayers(), kvW, KvCache.DEFAULT_BLOCK, kvBlocks);
        } catch (ArithmeticException e) {
            kvBytes = Long.MAX_VALUE;
        }
        long ropeFloats = Rope.tableFloats(c.dAtt(), contextLength);
        return a.footprint("inference buffers")
                .plus(Footprint.heap("KV cache", kvBytes, 2L * KvCache.DEFAULT_BLOCK * c.numLayers() * kvW))
                .plus(Footprint.heap("RoPE tables", Float.BYTES * ropeFloats, ropeFloats / 2));
    }

    public InferenceModel model() {
        return model;
    }

    public ModelConfig config() {
        return c;
    }

    /** The paged KV cache the sequences share. */
    public KvCache cache() {
        return kv;
    }

    /** Tokens one step takes at most (the prefill chunk). */
    public int maxTokens() {
        return maxTokens;
    }

    // ------------------------------------------------------------------ sequences and steps

    /** A new, empty sequence of up to the engine's context length, with its own selection. */
    public Sequence open(ExpertSelection selection) {
        return open(selection, contextLength);
    }

    /** A new, empty sequence of up to {@code capacity} positions (at most the engine's context length). */
    public Sequence open(ExpertSelection selection, int capacity) {
        if (capacity < 1 || capacity > contextLength) {
            throw new IllegalArgumentException("a sequence of " + capacity + " positions does not fit the engine's context of "
                    + contextLength);
        }
        return new Sequence(kv, capacity, Objects.requireNonNull(selection, "selection").check(c), numLayers);
    }

    /** Ends a sequence: its KV blocks go back to the cache. Closing twice does nothing. */
    public void close(Sequence s) {
        if (s.closed) return;
        checkOwn(s);
        s.truncate(0);
        s.closed = true;
    }

    /** Forgets a sequence's positions from {@code n} on (its blocks past them go back to the cache). */
    public void truncate(Sequence s, int n) {
        checkOwn(s);
        s.truncate(n);
    }

    /** Starts building a new step (forgets the last one's entries; its logits stay until the next run). */
    public void clearStep() {
        Arrays.fill(eSeq, 0, entries, null);
        Arrays.fill(eTokens, 0, entries, null);
        entries = stepTokens = logitRows = 0;
    }

    /**
     * Adds to the step {@code tokens[off .. off+len)} for sequence {@code s} (at its next
     * positions) and asks for {@code want} logits; returns the entry's index. A sequence takes
     * part once per step.
     */
    public int add(Sequence s, int[] tokens, int off, int len, Logits want) {
        checkOwn(s);
        if (s.closed) throw new IllegalArgumentException("the sequence is closed");
        if (len < 1 || off < 0 || off + len > tokens.length) {
            throw new IllegalArgumentException("tokens [" + off + ", " + (off + len) + ") of " + tokens.length);
        }
        if (stepTokens + len > maxTokens) {
            throw new IllegalArgumentException("a step takes at most " + maxTokens + " tokens; it has " + stepTokens
                    + " and " + len + " more were added");
        }
        if ((long) s.length + len > s.capacity()) {
            throw new IllegalArgumentException("a sequence of " + len + " tokens" + (s.length > 0 ? " after " + s.length
                    + " cached positions" : "") + " is longer than the context of " + s.capacity() + " positions"
                    + " (max_position_embeddings " + c.maxPositions() + ")");
        }
        for (int i = 0; i < entries; i++) {
            if (eSeq[i] == s) throw new IllegalArgumentException("a sequence takes part in a step once");
        }
        for (int i = 0; i < len; i++) checkToken(tokens[off + i], s.length + i);
        int e = entries++;
        eSeq[e] = s;
        eTokens[e] = tokens;
        eOff[e] = off;
        eLen[e] = len;
        eLogits[e] = Objects.requireNonNull(want, "logits");
        eRow[e] = stepTokens;
        eLogitsRow[e] = logitRows;
        stepTokens += len;
        logitRows += switch (want) {
            case NONE -> 0;
            case LAST -> 1;
            case ALL -> len;
        };
        return e;
    }

    /** Entries in the step being built. */
    public int stepEntries() {
        return entries;
    }

    /** Tokens in the step being built. */
    public int stepTokens() {
        return stepTokens;
    }

    /** KV blocks the step being built needs beyond those its sequences hold. */
    public int stepBlocksNeeded() {
        int need = 0;
        for (int i = 0; i < entries; i++) need += eSeq[i].blocksNeeded(eLen[i]);
        return need;
    }

    /**
     * Runs the step: every entry's tokens go into its sequence's cache and the logits asked for
     * are computed ({@link #logits()}, {@link #logitsRow}). When the cache has too few free blocks
     * for the step, throws IllegalStateException and changes nothing.
     */
    public void run() {
        if (entries == 0) return;
        int need = stepBlocksNeeded();
        if (need > kv.blocksAvailable()) {
            throw new IllegalStateException("the KV cache is full: the step needs " + need + " more blocks, "
                    + kv.blocksAvailable() + " are free");
        }
        for (int i = 0; i < entries; i++) {
            if (!eSeq[i].reserve(eLen[i])) throw new AssertionError("blocks were counted");
        }
        int T = stepTokens;
        float[] xa = x.array();
        for (int i = 0; i < entries; i++) {
            Sequence s = eSeq[i];
            for (int t = 0; t < eLen[i]; t++) {
                int row = eRow[i] + t;
                tokEntry[row] = i;
                tokPos[row] = s.length + t;
                model.embed().copyRow(eTokens[i][eOff[i] + t], xa, row * d);
            }
        }
        stepShared = sharedInputsOfStep();
        for (int l = 0; l < numLayers; l++) layer(l, T);
        for (int i = 0; i < entries; i++) {
            eSeq[i].length += eLen[i];
            eSeq[i].routedTokens += eLen[i];
        }
        routedTokens += T;
        phaseBegin();
        finalLogits(T);
        phaseEnd(Phase.HEAD);
    }

    /** The last run's logits: entry i's rows start at {@link #logitsRow}{@code (i) · V}. Valid until the next run. */
    public float[] logits() {
        return logits.array();
    }

    /** First row in {@link #logits()} of entry i's logits (one row for LAST, its tokens' for ALL). */
    public int logitsRow(int entry) {
        if (entry < 0 || entry >= entries) throw new IndexOutOfBoundsException("entry " + entry + " of " + entries);
        return eLogitsRow[entry];
    }

    /** What sequence s's routers chose since it opened: mean active experts and the parameters they imply. */
    public InferenceStats stats(Sequence s) {
        return InferenceStats.of(c, model.counts(), s.selection().toString(), s.attActive, s.mlpActive, s.routedTokens, 0, 0, 0, 0);
    }

    private void checkOwn(Sequence s) {
        if (Objects.requireNonNull(s, "sequence").cache != kv) throw new IllegalArgumentException("the sequence belongs to another engine");
    }

    // ------------------------------------------------------------------ the single-sequence API

    public ExpertSelection selection() {
        return selection;
    }

    /** Changes the selection for later steps of the single-sequence API (checked against the model). */
    public void setSelection(ExpertSelection selection) {
        this.selection = Objects.requireNonNull(selection, "selection").check(c);
        if (single != null) single.setSelection(this.selection);
    }

    private Sequence single() {
        if (single == null) single = open(selection);
        return single;
    }

    /** Positions the context holds. */
    public int contextLength() {
        return contextLength;
    }

    /** Tokens in the single sequence's cache (the position the next token gets). */
    public int position() {
        return single == null ? 0 : single.length;
    }

    /** Starts a new single sequence (empties its cache; statistics are kept). */
    public void reset() {
        if (single != null) single.truncate(0);
    }

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
        checkTokens(tokens, position());
        long t0 = System.nanoTime();
        for (int s = 0; s < tokens.length; s += maxTokens) {
            int m = Math.min(maxTokens, tokens.length - s);
            runSingle(tokens, s, m, s + m == tokens.length ? Logits.LAST : Logits.NONE);
        }
        prefillNanos += System.nanoTime() - t0;
        prefillTokens += tokens.length;
        return lastLogits.array();
    }

    /** Feeds one token at the next position and returns the next-token logits {@code [V]} (engine's buffer). */
    public float[] decode(int token) {
        if (position() >= contextLength) {
            throw new IllegalStateException("the context is full: " + position() + " of " + contextLength + " positions used");
        }
        checkToken(token, 0);
        long t0 = System.nanoTime();
        tokenBuffer[0] = token;
        runSingle(tokenBuffer, 0, 1, Logits.LAST);
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
        for (int s = 0; s < tokens.length; s += maxTokens) {
            int m = Math.min(maxTokens, tokens.length - s);
            runSingle(tokens, s, m, Logits.ALL);
            System.arraycopy(logits.array(), 0, all, s * vocab, m * vocab);
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
        for (int s = 0; s < tokens.length; s += maxTokens) {
            int m = Math.min(maxTokens, tokens.length - s);
            runSingle(tokens, s, m, Logits.ALL);
            for (int t = 0; t < m && s + t + 1 < tokens.length; t++) {
                lp[s + t] = logProb(logits.array(), t * vocab, tokens[s + t + 1]);
            }
        }
        prefillNanos += System.nanoTime() - t0;
        prefillTokens += tokens.length;
        return lp;
    }

    /** One step of the single sequence; LAST's logits also in {@link #lastLogits}. */
    private void runSingle(int[] tokens, int off, int m, Logits want) {
        clearStep();
        add(single(), tokens, off, m, want);
        run();
        if (want == Logits.LAST && logits != lastLogits) System.arraycopy(logits.array(), 0, lastLogits.array(), 0, vocab);
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
        if ((long) cached + tokens.length > contextLength) {
            throw new IllegalArgumentException("a sequence of " + tokens.length + " tokens"
                    + (cached > 0 ? " after " + cached + " cached positions" : "") + " is longer than the context of "
                    + contextLength + " positions (max_position_embeddings " + c.maxPositions() + ")");
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

    private void layer(int l, int T) {
        ParamLayout.Layer<TensorView> w = model.layer(l);
        phaseBegin();

        // Shared K/V heads into each sequence's cache blocks.
        RmsNorm.forward(x, w.inputNorm(), ln, null, T, eps);
        int together = sharedInputProducts(l);
        hiddenDone = together > 0 && sharedBase[l] > 2;
        queriesDone = together > sharedBase[l];
        if (together == 0) {
            shared(kNew, ln, w.kProj());
            shared(vNew, ln, w.vProj());
        }
        rope.forwardAt(kNew.array(), 0, kvW, T, nKv, tokPos, 0);
        storeKv(l, T);
        phaseEnd(Phase.KEYS_VALUES);

        // Mixture of attention heads over them.
        route(l, true, w.attnRouter(), attRouting, T, attGroups);
        phaseEnd(Phase.ATTENTION_ROUTER);
        int rows = attGroups.rows();
        inputProducts(q, w.qProj(), attGroups, stackedQueries);
        for (int r = 0; r < rows; r++) {
            int t = attGroups.token(r);
            rowPos[r] = tokPos[t];
            rowTables[r] = eSeq[tokEntry[t]].table;
        }
        rope.forwardAt(q.array(), 0, headW, rows, nHead, rowPos, 0);
        phaseEnd(Phase.QUERIES);
        attention(l, rows);
        phaseEnd(Phase.ATTENTION);
        Gating.scaleRows(att, attGroups, gates);
        outputProducts(att, w.oProj(), model.attentionOutputSideBySide(l), attGroups);
        phaseEnd(Phase.ATTENTION_OUTPUT);

        // Mixture of MLP experts.
        RmsNorm.forward(x, w.postAttnNorm(), ln, null, T, eps);
        route(l, false, w.mlpRouter(), mlpRouting, T, mlpGroups);
        phaseEnd(Phase.MLP_ROUTER);
        inputProducts(hidden, w.upProj(), mlpGroups, stackedHidden);
        phaseEnd(Phase.MLP_INPUT);
        Gelu.forward(hidden.array(), 0, hidden.array(), 0, mlpGroups.rows() * dFfd);
        Gating.scaleRows(hidden, mlpGroups, gates);
        phaseEnd(Phase.ACTIVATION);
        outputProducts(hidden, w.downProj(), null, mlpGroups);
        phaseEnd(Phase.MLP_OUTPUT);
        Arrays.fill(rowTables, 0, rows, null);
    }

    /**
     * The parts of a step that {@link #timePhases} splits its time into, in the order a layer runs
     * them (each summed over the layers), then the head. Products, the work around them and the
     * threads' dispatch all count in the phase that makes them.
     */
    public enum Phase {
        /**
         * Input norm, the shared K and V products, their RoPE and the cache store; in a decode step
         * also the products made in the same pass ({@link #sharedInputProducts}: the attention
         * router's hidden layer, and the whole MoA's stacked queries).
         */
        KEYS_VALUES("K/V: norm, products (decode: one pass with router hidden, whole MoA's queries), RoPE, cache store"),
        /** The attention router (its products, softmax, selection) and the grouping by expert; in a decode step its hidden product is in {@link #KEYS_VALUES}. */
        ATTENTION_ROUTER("attention router and grouping"),
        /** The MoA experts' query products and their RoPE; a decode step's whole-MoA queries are made in {@link #KEYS_VALUES}. */
        QUERIES("query products, RoPE"),
        /** Attention over the cache (scores, softmax, weighted values). */
        ATTENTION("attention over the cache"),
        /** Gating and the MoA experts' output products into the residual. */
        ATTENTION_OUTPUT("attention output products"),
        /** Post-attention norm, the MLP router and the grouping. */
        MLP_ROUTER("MLP norm, router and grouping"),
        /** The MLP experts' input products. */
        MLP_INPUT("MLP input products"),
        /** GELU and gating of the MLP experts' hidden rows. */
        ACTIVATION("GELU and gating"),
        /** The MLP experts' output products into the residual. */
        MLP_OUTPUT("MLP output products"),
        /** Final norm and output head (the rows asked for). */
        HEAD("final norm, output head");

        private final String label;

        Phase(String label) {
            this.label = label;
        }

        /** A short description for tables. */
        public String label() {
            return label;
        }

        /** The name in lower case: the key of a phase in reports ({@code bench infer --json}). */
        public String key() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /**
     * Starts timing the steps by {@link Phase} from zero ({@code true}; about twenty clock reads a
     * layer) or stops it ({@code false}, the default: then the step reads no clock for it).
     */
    public void timePhases(boolean on) {
        phaseNanos = on ? new long[Phase.values().length] : null;
    }

    /** Nanoseconds spent in each {@link Phase} (by ordinal) since {@link #timePhases}{@code (true)}; null when not timing. */
    public long[] phaseNanos() {
        return phaseNanos == null ? null : phaseNanos.clone();
    }

    private void phaseBegin() {
        if (phaseNanos != null) phaseStart = System.nanoTime();
    }

    private void phaseEnd(Phase p) {
        if (phaseNanos == null) return;
        long now = System.nanoTime();
        phaseNanos[p.ordinal()] += now - phaseStart;
        phaseStart = now;
    }

    /**
     * Attention of the step's grouped query rows over their sequences' caches: with oneDNN, a
     * prompt chunk's rows by two matrix products per block of queries ({@link PromptAttention}),
     * the others (and all without oneDNN) by {@link CachedAttention}, which leaves alone the rows
     * whose table is null. Per entry, so a sequence's result does not depend on the rest of the step.
     */
    private void attention(int l, int rows) {
        OneDnn dnn = mm.oneDnn();
        if (dnn != null && PromptAttention.grouped(kvHeadOf, nHead)) {
            for (int i = 0; i < entries; i++) {
                if (eLen[i] <= SMALL) continue;
                int n = 0;
                for (int r = 0; r < rows; r++) {
                    if (tokEntry[attGroups.token(r)] == i) {
                        attRows[n++] = r;
                        rowTables[r] = null;
                    }
                }
                PromptAttention.forward(dnn, q.array(), 0, headW, attRows, n, nHead, kvHeadOf, eSeq[i].table, kv.keyOffset(l),
                        kv.valueOffset(l), kv.blockSize(), kvW, dAtt, rowPos, att.array(), 0, headW);
            }
        }
        CachedAttention.forward(q.array(), 0, headW, rows, nHead, kvHeadOf, rowTables, kv.keyOffset(l), kv.valueOffset(l),
                kv.blockSize(), kvW, dAtt, rowPos, 0, att.array(), 0, headW);
    }

    /** The step's new keys and values into their sequences' blocks, layer l. */
    private void storeKv(int l, int T) {
        int shift = Integer.numberOfTrailingZeros(kv.blockSize()), mask = kv.blockSize() - 1;
        int ko = kv.keyOffset(l), vo = kv.valueOffset(l);
        float[] ka = kNew.array(), va = vNew.array();
        for (int t = 0; t < T; t++) {
            int p = tokPos[t];
            float[] block = eSeq[tokEntry[t]].table[p >> shift];
            int at = (p & mask) * kvW;
            System.arraycopy(ka, t * kvW, block, ko + at, kvW);
            System.arraycopy(va, t * kvW, block, vo + at, kvW);
        }
    }

    /**
     * A decode step's (every entry of at most {@link #SMALL} tokens) products of the normed
     * residual in one mat-vec pass over layer l's key and value projections, its attention router's
     * hidden layer, and, where every entry's rule takes every attention expert (dense MoA, as
     * DS-MoE's top-k of the MLP alone leaves it) and its tokens fit {@link #wholeDecodeProducts}'s
     * stacked rows, its stacked queries: passes of 128 to 2048 rows each paid a start and a join
     * (BENCHMARKS, session 22). The same bits as the products one by one. Returns how many weights
     * it took, 0 when the step is not a decode step (or {@code -Ddsmoe.sharedInputs=false}).
     */
    private int sharedInputProducts(int l) {
        if (stepShared == 0) return 0;
        int n = sharedBase[l] + (stepShared == 2 && sharedWeights[l].length > sharedBase[l] ? 1 : 0);
        mmVec.forwardShared(sharedOutputs[l], 0, ln, 0, stepTokens, sharedWeights[l], n, sharedY, sharedOff, sharedLd);
        return n;
    }

    /** What {@link #sharedInputProducts} takes in this step, the same for every layer: 0, 1 (no queries) or 2 (with them). */
    private int sharedInputsOfStep() {
        if (!SHARED_INPUTS || sharedWeights.length == 0) return 0;
        boolean whole = stackedQueries != null && stepTokens <= stackedQueries.rows();
        for (int i = 0; i < entries; i++) {
            if (eLen[i] > SMALL) return 0;
            ExpertSelection.Rule r = rule(eSeq[i], true);
            whole &= eLen[i] <= EXPERT_SMALL
                    && (r.kind() == ExpertSelection.Kind.DENSE || (r.kind() == ExpertSelection.Kind.TOP_K && r.k() >= nAtt));
        }
        return whole ? 2 : 1;
    }

    /**
     * {@code dst[t] = src[t] · Wᵀ} for the step's T rows: an entry of more than {@link #SMALL}
     * tokens alone (GEMM), runs of the others together through the mat-vec, as each would alone.
     */
    private void shared(F32Tensor dst, F32Tensor src, TensorView w) {
        for (int i = 0; i < entries; ) {
            if (eLen[i] > SMALL) {
                mm.forward(dst, eRow[i], src, eRow[i], eLen[i], w, false);
                i++;
                continue;
            }
            int j = i;
            while (j < entries && eLen[j] <= SMALL) j++;
            int r0 = eRow[i];
            mmVec.forward(dst, r0, src, r0, eRow[j - 1] + eLen[j - 1] - r0, w, false);
            i = j;
        }
    }

    /**
     * {@code dst[r] = src[r] · W_{expert(r)}ᵀ} for the grouped rows: a run of more than
     * {@link #EXPERT_SMALL} rows of one entry alone (GEMM), all the other runs in one mat-vec pass.
     */
    private void expertProducts(F32Tensor dst, F32Tensor src, TensorView w, ExpertGroups g) {
        expertProducts(dst, src, w, g, null);
    }

    /** {@link #expertProducts} leaving out the rows of tokens t with {@code skip[t] != 0} (null: none). */
    private void expertProducts(F32Tensor dst, F32Tensor src, TensorView w, ExpertGroups g, int[] skip) {
        int n = 0, runs = 0;
        for (int e = 0; e < g.experts(); e++) {
            int r = g.start(e), end = r + g.count(e);
            while (r < end) {
                int r1 = runEnd(g, r, end), cnt = r1 - r;
                if (skip != null && skip[g.token(r)] != 0) {
                    // an entry's tokens are all skipped or none
                } else if (cnt > EXPERT_SMALL) {
                    runStart[runs] = r;
                    runCount[runs] = cnt;
                    runExpert[runs] = e;
                    runs++;
                } else if (n > 0 && segExpert[n - 1] == e && segStart[n - 1] + segCount[n - 1] == r) {
                    segCount[n - 1] += cnt;
                } else {
                    segStart[n] = r;
                    segCount[n] = cnt;
                    segExpert[n] = e;
                    n++;
                }
                r = r1;
            }
        }
        mm.runs(dst, src, w, runs, runStart, runCount, runExpert);
        mmVec.segments(dst, src, w, n, segStart, segCount, segExpert);
    }

    /**
     * A mixture's output products {@code src[r] · W_{expert(r)}ᵀ} (inputs already gated) added
     * into their tokens' residual rows {@code x}, each token's in ascending expert order, one of
     * five ways per entry (each depends on the entry's own tokens only, so batch invariance holds):
     * <ul>
     * <li>given the experts side by side (MoA's, {@link InferenceModel#attentionOutputSideBySide}),
     *     an entry whose tokens all chose every expert: {@link #sideBySideProducts}, one product
     *     over rows of E·w weights;
     * <li>with oneDNN ({@link Matmul#readsGrouped}), a prompt chunk (more than {@link #SMALL}
     *     tokens): {@link #promptOutputProducts}, one product per (expert, entry) run added into
     *     the residual rows as oneDNN writes them;
     * <li>an entry of at most {@link #FUSED} tokens (decode), in a layer with several experts:
     *     its tokens' products summed in one accumulator per output ({@link Matmul#pieceSums});
     * <li>a longer entry (a prompt chunk) whose tokens all chose the same experts (every token
     *     of a one-expert layer, or of a mixture all of whose experts are active, as DS-MoE's MoA
     *     under a top-k of the MLP only): one GEMM per expert straight into its rows of x,
     *     accumulating ({@code beta = 1}), in expert order, with no row per expert in between
     *     (dsmoe-1b's MoA wrote and then re-read 32 MiB a layer for a chunk of 256);
     * <li>any other entry: a row per expert in {@code out} ({@link #expertProducts}), then the
     *     scatter-add ({@link Gating#addRows}).
     * </ul>
     */
    private void outputProducts(F32Tensor src, TensorView w, TensorView sideBySide, ExpertGroups g) {
        int wide = sideBySide == null ? 0 : sideBySideProducts(src, sideBySide, g);
        int prompt = markPrompts(w);
        for (int i = 0; wide > 0 && i < entries; i++) {
            if (eWide[i] == 0 || tokPrompt[eRow[i]] == 0) continue;
            prompt -= eLen[i];
            Arrays.fill(tokPrompt, eRow[i], eRow[i] + eLen[i], 0);
        }
        if (prompt > 0) promptOutputProducts(src, w, g);
        if (prompt + wide == stepTokens) return;
        markWholeEntries(g, FUSED); // eWhole > 0: prompt chunks whose tokens all chose the same experts
        int slots = 0, n = 0, handled = 0;
        boolean mixture = g.experts() > 1;
        for (int i = 0; i < entries; i++) {
            boolean done = wide > 0 && eWide[i] != 0, grouped = prompt > 0 && tokPrompt[eRow[i]] != 0;
            if (done) eWhole[i] = -1;
            boolean fused = !done && !grouped && mixture && eLen[i] <= FUSED, skip = done || grouped || fused || eWhole[i] > 0;
            if (skip) handled += eLen[i];
            for (int t = eRow[i]; t < eRow[i] + eLen[i]; t++) {
                tokSlot[t] = fused ? slots : -1;
                tokSkip[t] = skip ? 1 : 0;
                if (fused) slotRow[slots++] = t;
            }
        }
        if (handled < stepTokens) {
            expertProducts(out, src, w, g, handled > 0 ? tokSkip : null);
            Gating.addRows(out, g, x, handled > 0 ? tokSkip : null);
        }
        for (int e = 0; slots > 0 && e < g.experts(); e++) {
            for (int r = g.start(e); r < g.start(e) + g.count(e); r++) {
                int s = tokSlot[g.token(r)];
                if (s < 0) continue;
                pieceRow[n] = r;
                pieceExpert[n] = e;
                pieceSlot[n++] = s;
            }
        }
        if (n > 0) mmVec.pieceSums(x, src, w, n, pieceRow, pieceExpert, pieceSlot, slots, slotRow);
        for (int e = 0; handled > slots && e < g.experts(); e++) {
            for (int r = g.start(e), end = r + g.count(e), r1; r < end; r = r1) {
                r1 = runEnd(g, r, end);
                int entry = tokEntry[g.token(r)];
                if (eWhole[entry] > 0) mm.forward(x, eRow[entry], src, r, r1 - r, w.expert(e), true);
            }
        }
    }

    /**
     * The entries whose tokens all chose every expert (DS-MoE's MoA under a top-k of the MLP
     * alone): each token's gated rows of {@code src} gathered side by side (row t of the
     * stacked-queries buffer, free by now: columns {@code [e·w, (e+1)·w)} from its row of expert
     * e), then one product with the experts side by side ({@code [d, E·w]},
     * {@link InferenceModel#attentionOutputSideBySide}) added into x: decode's adjacent such
     * entries in one mat-vec, a prompt chunk in a product of its own, so a token's path and sums
     * depend on its own entry only. Sets {@code eWide}; returns the tokens done (0: none, and
     * {@code eWide} is not set).
     */
    private int sideBySideProducts(F32Tensor src, TensorView wide, ExpertGroups g) {
        F32Tensor buf = stackedQueries;
        int experts = g.experts(), w = src.cols(), done = 0;
        if (buf == null || buf.cols() != experts * w || wide.cols() != experts * w) return 0;
        Arrays.fill(tokPrompt, 0, stepTokens, 0); // every entry is a candidate, prompt chunks too
        markWholeEntries(g, 0);
        for (int i = 0; i < entries; i++) {
            eWide[i] = eWhole[i] == experts ? 1 : 0;
            done += eWide[i] * eLen[i];
        }
        if (done == 0) return 0;
        float[] s = src.array(), b = buf.array();
        for (int e = 0; e < experts; e++) {
            for (int r = g.start(e), end = r + g.count(e); r < end; r++) {
                int t = g.token(r);
                if (eWide[tokEntry[t]] != 0) System.arraycopy(s, src.rowOff(r), b, buf.rowOff(t) + e * w, w);
            }
        }
        for (int i = 0; i < entries; ) {
            if (eWide[i] == 0) {
                i++;
            } else if (eLen[i] > SMALL) {
                mm.forward(x, eRow[i], buf, eRow[i], eLen[i], wide, true);
                i++;
            } else {
                int j = i, len = 0;
                while (j < entries && eWide[j] != 0 && eLen[j] <= SMALL && eRow[j] == eRow[i] + len) len += eLen[j++];
                mmVec.forward(x, eRow[i], buf, eRow[i], len, wide, true);
                i = j;
            }
        }
        return done;
    }

    /**
     * A mixture's input products {@code dst[r] = ln[token(r)] · W_{expert(r)}ᵀ}. With oneDNN
     * ({@link Matmul#readsGrouped}), the runs of prompt chunks (entries of more than {@link #SMALL}
     * tokens) go through {@link #promptProducts}; without oneDNN, prompt chunks whose every token
     * chose every expert go through {@link #stackedProducts}, and so do decode's such entries
     * ({@link #wholeDecodeProducts}) in either case; the rest is gathered into {@code in}
     * and goes through {@link #expertProducts}. Which way a token goes depends on its own entry
     * only, so batch invariance holds.
     */
    private void inputProducts(F32Tensor dst, TensorView w, ExpertGroups g, F32Tensor stacked) {
        int prompt = markPrompts(w);
        if (prompt > 0) promptProducts(dst, ln, w, g);
        if (prompt == stepTokens) return;
        int done = prompt + stackedProducts(dst, w, g, stacked);
        if (done < stepTokens) {
            g.gather(ln.array(), d, in.array());
            expertProducts(dst, in, w, g, done > 0 ? tokSkip : null);
        }
    }

    /**
     * The input products of the step's prompt chunks (more than {@link #EXPERT_SMALL} tokens, not
     * oneDNN's) whose every token chose every expert, as DS-MoE's MoA does when only the MLP is
     * sparse and as a one-expert layer does: one GEMM over the stacked experts {@code W = [E·R, d]}
     * read straight from the chunk's rows of {@code ln}, with no gathered copy (32 MiB a layer for
     * dsmoe-1b's MoA and a chunk of 256), then each expert's R columns copied to its rows of
     * {@code dst} (a one-expert layer's GEMM writes its rows directly): sixteen products of 128
     * weight rows took about 1.3 times as long as one of 2048 (BENCHMARKS.md, session 17). Sets
     * {@code tokSkip[t]} for every token (1: done here or by oneDNN); returns the tokens done here.
     */
    private int stackedProducts(F32Tensor dst, TensorView w, ExpertGroups g, F32Tensor stacked) {
        int experts = g.experts(), rows = w.expert(0).rows(), done = 0;
        markWholeEntries(g, EXPERT_SMALL);
        for (int i = 0; i < entries; i++) {
            boolean whole = eWhole[i] == experts && (experts == 1 || (stacked != null && eLen[i] <= stacked.rows() && stacked.cols() == experts * rows));
            for (int t = eRow[i]; t < eRow[i] + eLen[i]; t++) tokSkip[t] = whole || tokPrompt[t] != 0 ? 1 : 0;
            if (!whole) continue;
            done += eLen[i];
            if (experts == 1) {
                mm.forward(dst, runRow(g, 0, i), ln, eRow[i], eLen[i], w, false);
                continue;
            }
            mm.forward(stacked, 0, ln, eRow[i], eLen[i], w, false);
            float[] src = stacked.array(), out = dst.array();
            for (int e = 0; e < experts; e++) {
                int r0 = runRow(g, e, i);
                for (int k = 0; k < eLen[i]; k++) {
                    System.arraycopy(src, stacked.rowOff(k) + e * rows, out, dst.rowOff(r0 + k), rows);
                }
            }
        }
        if (experts > 1 && stacked != null && stacked.cols() == experts * rows) done += wholeDecodeProducts(dst, w, g, stacked);
        return done;
    }

    /**
     * The decode entries (at most {@link #EXPERT_SMALL} tokens, not oneDNN's) whose tokens all
     * chose every expert of a mixture, as DS-MoE's MoA under a top-k of the MLP alone: one mat-vec
     * over the stacked experts {@code [E·R, d]} for each run of adjacent such entries (row t of
     * {@code stacked} for token t), then each expert's R columns to its rows of {@code dst}, where
     * sixteen mat-vecs of 128 rows read more slowly than one of 2048. Sets {@code tokSkip[t]} for
     * their tokens; returns how many.
     */
    private int wholeDecodeProducts(F32Tensor dst, TensorView w, ExpertGroups g, F32Tensor stacked) {
        int experts = g.experts(), rows = w.expert(0).rows(), done = 0;
        markWholeEntries(g, 0, EXPERT_SMALL);
        for (int i = 0; i < entries; ) {
            if (eWhole[i] != experts) {
                i++;
                continue;
            }
            int j = i, len = 0;
            while (j < entries && eWhole[j] == experts && eRow[j] == eRow[i] + len) len += eLen[j++];
            if (!(queriesDone && stacked == stackedQueries)) mmVec.forward(stacked, eRow[i], ln, eRow[i], len, w, false);
            Arrays.fill(tokSkip, eRow[i], eRow[i] + len, 1);
            done += len;
            i = j;
        }
        if (done == 0) return 0;
        float[] src = stacked.array(), out = dst.array();
        for (int e = 0; e < experts; e++) {
            for (int r = g.start(e), end = r + g.count(e); r < end; r++) {
                int t = g.token(r);
                if (eWhole[tokEntry[t]] == experts) System.arraycopy(src, stacked.rowOff(t) + e * rows, out, dst.rowOff(r), rows);
            }
        }
        return done;
    }

    /**
     * {@code eWhole[i]}: for a prompt chunk of more than {@code minTokens} tokens that oneDNN does
     * not take ({@code tokPrompt}), the number of experts whose run holds all its tokens, or -1
     * where some expert's run holds only part of them (its tokens did not all choose the same
     * experts); -1 for every other entry.
     */
    private void markWholeEntries(ExpertGroups g, int minTokens) {
        markWholeEntries(g, minTokens, Integer.MAX_VALUE);
    }

    /** {@link #markWholeEntries(ExpertGroups, int)} for the entries of more than {@code minTokens} and at most {@code maxTokens} tokens. */
    private void markWholeEntries(ExpertGroups g, int minTokens, int maxTokens) {
        for (int i = 0; i < entries; i++) eWhole[i] = eLen[i] > minTokens && eLen[i] <= maxTokens && tokPrompt[eRow[i]] == 0 ? 0 : -1;
        for (int e = 0; e < g.experts(); e++) {
            for (int r = g.start(e), end = r + g.count(e), r1; r < end; r = r1) {
                r1 = runEnd(g, r, end);
                int entry = tokEntry[g.token(r)];
                if (eWhole[entry] >= 0) eWhole[entry] = r1 - r == eLen[entry] ? eWhole[entry] + 1 : -1;
            }
        }
    }

    /** The first grouped row of expert e that belongs to entry i (the entry has a run there). */
    private int runRow(ExpertGroups g, int e, int i) {
        int r = g.start(e), end = r + g.count(e);
        while (r < end && tokEntry[g.token(r)] != i) r = runEnd(g, r, end);
        return r;
    }

    /** {@code tokPrompt[t] = 1} for the tokens of prompt chunks when oneDNN reads w (else 0); how many. */
    private int markPrompts(TensorView w) {
        boolean grouped = mm.readsGrouped(w);
        int n = 0;
        for (int i = 0; i < entries; i++) {
            boolean p = grouped && eLen[i] > SMALL;
            if (p) n += eLen[i];
            for (int t = eRow[i]; t < eRow[i] + eLen[i]; t++) tokPrompt[t] = p ? 1 : 0;
        }
        return n;
    }

    /**
     * The prompt chunks' runs ({@code tokPrompt}) through oneDNN's grouped products
     * ({@link Matmul#groupedRuns}): {@code dst[r] = src[token(r)] · W_{expert(r)}ᵀ}, one product per
     * (expert, entry) run read straight from the token rows (no gathered copy of the input): a run
     * that holds all its entry's tokens reads them where they are, so every expert of a chunk
     * shares one conversion of its rows; the other runs' rows are listed after them.
     */
    private void promptProducts(F32Tensor dst, F32Tensor src, TensorView w, ExpertGroups g) {
        boolean whole = false;
        for (int e = 0; e < g.experts() && !whole; e++) {
            for (int r = g.start(e), end = r + g.count(e), r1; r < end && !whole; r = r1) {
                r1 = runEnd(g, r, end);
                whole = tokPrompt[g.token(r)] != 0 && r1 - r == eLen[tokEntry[g.token(r)]];
            }
        }
        int listed = 0, n = 0;
        if (whole) for (int t = 0; t < stepTokens; t++) srcRows[listed++] = t;
        for (int e = 0; e < g.experts(); e++) {
            for (int r = g.start(e), end = r + g.count(e), r1; r < end; r = r1) {
                r1 = runEnd(g, r, end);
                int entry = tokEntry[g.token(r)];
                if (tokPrompt[g.token(r)] == 0) continue;
                if (r1 - r == eLen[entry] && whole) {
                    runIn[n] = eRow[entry];
                } else {
                    runIn[n] = listed;
                    for (int i = r; i < r1; i++) srcRows[listed++] = g.token(i);
                }
                runStart[n] = r;
                runCount[n] = r1 - r;
                runExpert[n++] = e;
            }
        }
        mm.groupedRuns(dst, src, w, n, runExpert, srcRows, listed, runIn, runCount, null, runStart, false, false);
    }

    /**
     * The prompt chunks' output products ({@code tokPrompt}; inputs already gated) added into
     * their tokens' residual rows by oneDNN's grouped products, one per (entry, expert) run, each
     * token's terms in ascending expert order ({@link Matmul#groupedRuns} with shared outputs).
     */
    private void promptOutputProducts(F32Tensor src, TensorView w, ExpertGroups g) {
        // entry by entry, each entry's runs in expert order: which consecutive runs share their
        // rows (and so sum inside oneDNN) then depends on the entry alone, as batch invariance needs
        int n = 0;
        for (int i = 0; i < entries; i++) {
            if (tokPrompt[eRow[i]] == 0) continue;
            for (int e = 0; e < g.experts(); e++) {
                int r = g.start(e), end = r + g.count(e);
                while (r < end && tokEntry[g.token(r)] < i) r++; // an expert's rows are in token order
                if (r == end || tokEntry[g.token(r)] != i) continue;
                int r1 = runEnd(g, r, end);
                runStart[n] = r;
                runCount[n] = r1 - r;
                runExpert[n++] = e;
            }
        }
        mm.groupedRuns(x, src, w, n, runExpert, null, g.rows(), runStart, runCount, g.tokens(), runStart, true, true);
    }

    /** The end of the run of grouped rows from r (one expert's, {@code [r, end)}) that belong to r's entry. */
    private int runEnd(ExpertGroups g, int r, int end) {
        int entry = tokEntry[g.token(r)], r1 = r + 1;
        while (r1 < end && tokEntry[g.token(r1)] == entry) r1++;
        return r1;
    }

    /**
     * Router probabilities of the step's tokens (from {@code ln}, products made as in
     * {@link #shared}), each entry's selection by its sequence's rule, and the grouping by expert.
     * A layer type with one expert has no router: every token gets expert 0 with gate 1.
     */
    private void route(int layer, boolean attention, ParamLayout.Router<TensorView> router, Routing.Buffers buf, int T,
                       ExpertGroups groups) {
        int width;
        if (router == null) {
            Arrays.fill(chosen, 0, T, 0);
            Arrays.fill(gates, 0, T, 1f);
            width = 1;
        } else {
            for (int i = 0; i < entries; ) {
                if (eLen[i] > SMALL) {
                    Routing.forward(mm, router.hidden(), router.out(), ln, eRow[i], eLen[i], buf);
                    i++;
                    continue;
                }
                int j = i;
                while (j < entries && eLen[j] <= SMALL) j++;
                int r0 = eRow[i];
                if (attention && hiddenDone) { // its hidden rows came with the keys and values (sharedInputProducts)
                    Routing.forwardFromHidden(mmVec, router.hidden(), router.out(), r0, eRow[j - 1] + eLen[j - 1] - r0, buf);
                } else {
                    Routing.forward(mmVec, router.hidden(), router.out(), ln, r0, eRow[j - 1] + eLen[j - 1] - r0, buf);
                }
                i = j;
            }
            int n = router.out().rows();
            float[] probs = buf.probs().array();
            if (entries == 1) {
                width = rule(eSeq[0], attention).select(probs, 0, T, n, chosen, gates, 0);
            } else {
                width = 1;
                for (int i = 0; i < entries; i++) width = Math.max(width, rule(eSeq[i], attention).maxPerToken(n));
                for (int i = 0; i < entries; i++) {
                    int w = rule(eSeq[i], attention).select(probs, eRow[i] * n, eLen[i], n, seqChosen, seqGates, 0);
                    for (int t = 0; t < eLen[i]; t++) {
                        int dst = (eRow[i] + t) * width, src = t * w;
                        for (int j = 0; j < width; j++) {
                            chosen[dst + j] = j < w ? seqChosen[src + j] : -1;
                            gates[dst + j] = j < w ? seqGates[src + j] : 0f;
                        }
                    }
                }
            }
        }
        if (routeObserver != null) routeObserver.routed(layer, attention, chosen, T, width);
        groups.group(chosen, T, width);
        long[] active = attention ? attActive : mlpActive;
        active[layer] += groups.rows();
        for (int r = 0; r < groups.rows(); r++) {
            Sequence s = eSeq[tokEntry[groups.token(r)]];
            (attention ? s.attActive : s.mlpActive)[layer]++;
        }
    }

    private static ExpertSelection.Rule rule(Sequence s, boolean attention) {
        return attention ? s.selection().attention() : s.selection().mlp();
    }

    /** The final norm and the output head for the rows the entries asked for. */
    private void finalLogits(int T) {
        if (logitRows == 0) return;
        if (logitRows > logits.rows()) logits = F32Tensor.of(new float[Math.multiplyExact(maxTokens, vocab)], maxTokens, vocab); // counted in footprint
        RmsNorm.forward(x, model.finalNorm(), ln, null, T, eps);
        float[] la = ln.array(), ia = in.array();
        for (int i = 0; i < entries; i++) {
            switch (eLogits[i]) {
                case NONE -> { }
                case LAST -> System.arraycopy(la, (eRow[i] + eLen[i] - 1) * d, ia, eLogitsRow[i] * d, d);
                case ALL -> System.arraycopy(la, eRow[i] * d, ia, eLogitsRow[i] * d, eLen[i] * d);
            }
        }
        TensorView e = model.output();
        for (int i = 0; i < entries; ) {
            int rows = rowsOfLogits(i);
            if (rows > SMALL) {
                mm.forward(logits, eLogitsRow[i], in, eLogitsRow[i], rows, e, false);
                i++;
                continue;
            }
            int j = i;
            while (j < entries && rowsOfLogits(j) <= SMALL) j++;
            int r0 = eLogitsRow[i], r1 = j == entries ? logitRows : eLogitsRow[j];
            if (r1 > r0) mmVec.forward(logits, r0, in, r0, r1 - r0, e, false);
            i = j;
        }
    }

    private int rowsOfLogits(int entry) {
        return switch (eLogits[entry]) {
            case NONE -> 0;
            case LAST -> 1;
            case ALL -> eLen[entry];
        };
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
