package dev.dsmoe.infer;

import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.F32Tensor;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Matmul;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.kernels.TensorView;
import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamCounts;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.function.Function;

/**
 * The weights of a model for inference: the config and every tensor of {@link ParamLayout} as a
 * view ({@link TensorView}) in the weight format chosen at load ({@link MatVec.DType}: fp32,
 * bf16 or int8 Q8_0). Tensors already in that format are used in place (the memory-mapped file,
 * nothing copied: an fp32 or bf16 tensor, or a quantized checkpoint's Q8_0 quants and scales),
 * others are converted (or quantized) once into off-heap memory. A quantized checkpoint
 * ({@code dsmoe quantize}) loads only in its own type. Norm gains are small and kept as fp32
 * heap views. Segments are shared: readable from any thread.
 */
public final class InferenceModel implements AutoCloseable {

    private final ModelConfig config;
    private final MatVec.DType dtype;
    private final ParamLayout.Weights<TensorView> weights;
    private final ParamCounts counts;
    private final SafeTensors file;
    private final Arena arena;
    /**
     * Per layer, the MoA output projection {@code [N_att, d, w]} with its experts side by side
     * ({@code [d, N_att·w]}, {@link TensorView#sideBySide}), a copy made at load: an entry whose
     * tokens all chose every attention expert (DS-MoE's MoA under a top-k of the MLP alone) sums
     * their outputs in one product over rows of N_att·w weights, where E pieces of w = 128 read at
     * about 0.6 of a plain mat-vec's speed (BENCHMARKS.md, session 21). Null entries without
     * several attention experts, where the format cannot ({@link #hasSideBySideOutputs}), or with
     * {@code -Ddsmoe.moaSideBySide=false} (to measure the pieces alone).
     */
    private final TensorView[] attentionOutputs;

    private InferenceModel(ParamLayout layout, MatVec.DType dtype, Source src, SafeTensors file, Arena arena)
            throws IOException {
        this.config = layout.config();
        this.dtype = dtype;
        this.file = file;
        this.arena = arena;
        counts = new ParamCounts(layout);
        weights = layout.map(t -> t.role() == ParamLayout.Role.NORM
                ? F32Tensor.of(src.floats(t), 1, t.dim(0)) : src.weight(t));
        attentionOutputs = new TensorView[config.numLayers()];
        for (int l = 0; arena != null && hasSideBySideOutputs(config, dtype) && l < attentionOutputs.length; l++) {
            TensorView o = weights.layer(l).oProj();
            attentionOutputs[l] = o.sideBySide(arena.allocate(o.sideBySideBytes(), 64));
        }
    }

    /** Whether a model of {@code c} loaded as {@code dtype} keeps its MoA output experts side by side too ({@link #attentionOutputSideBySide}). */
    static boolean hasSideBySideOutputs(ModelConfig c, MatVec.DType dtype) {
        long w = (long) c.nHead() * c.dAtt();
        return c.nAtt() > 1 && (dtype.scaleBlock == 0 || w % dtype.scaleBlock == 0)
                && Boolean.parseBoolean(System.getProperty("dsmoe.moaSideBySide", "true"));
    }

    /** Bytes of the side-by-side MoA output copies a model of {@code c} in {@code dtype} allocates (0 if none). */
    static long sideBySideOutputBytes(ModelConfig c, MatVec.DType dtype) {
        return hasSideBySideOutputs(c, dtype) ? c.numLayers() * dtype.bytes(c.dEmb(), (long) c.nAtt() * c.nHead() * c.dAtt()) : 0;
    }

    /**
     * Loads {@code dir/config.json} and memory-maps {@code dir/model.safetensors}, both of one
     * checkpoint ({@link ModelFiles#openCheckpoint}); weights end up in {@code dtype}, which for a
     * quantized checkpoint must be the type it is stored in (else an IllegalArgumentException that
     * says so). Missing files, missing or extra tensors and wrong shapes or types (a Q8_0 weight's
     * scales included) are IOExceptions naming the file and the tensor.
     */
    public static InferenceModel load(Path dir, MatVec.DType dtype) throws IOException {
        ModelFiles.Checkpoint ckpt = ModelFiles.openCheckpoint(dir);
        ModelConfig config = ckpt.config();
        MatVec.DType stored = ckpt.quantization();
        SafeTensors st = ckpt.model();
        Arena arena = Arena.ofShared();
        try {
            if (stored != null && stored != dtype) throw new IllegalArgumentException(storedOnly(dir, stored, dtype));
            checkSupported(config);
            ParamLayout layout = ParamLayout.of(config);
            ModelFiles.checkWeights(st, layout, stored);
            Source src = new Source() {
                @Override
                public TensorView weight(ParamLayout.Tensor t) throws IOException {
                    SafeTensors.Info info = st.info(t.name());
                    if (stored != null && dtype.scaleBlock > 0) { // quants and scales, both in place in the mapped file
                        SafeTensors.Info scales = st.info(ModelFiles.scaleName(t.name()));
                        int[] m = matrix(t);
                        return experts(dtype.view(st.data(), info.begin(), scales.begin(), m[0], m[1]), t);
                    }
                    MemorySegment raw = st.segment(t.name());
                    MemorySegment seg = converts(info.dtype(), dtype) ? convert(arena, raw, info.dtype(), dtype, t) : raw;
                    return view(seg, dtype, t);
                }

                @Override
                public float[] floats(ParamLayout.Tensor t) throws IOException {
                    float[] a = new float[Math.toIntExact(t.numel())];
                    st.readFloats(t.name(), t.shape(), a, 0);
                    return a;
                }
            };
            return new InferenceModel(layout, dtype, src, st, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            st.close();
            throw e;
        }
    }

    /** {@link #load(Path, MatVec.DType)} in the type the checkpoint is stored in: its quantization, else fp32. */
    public static InferenceModel load(Path dir) throws IOException {
        MatVec.DType q = ModelFiles.readStored(dir).quantization();
        return load(dir, q != null ? q : MatVec.DType.F32);
    }

    /** Why a checkpoint stored as {@code stored} is not loaded as {@code dtype}. */
    private static String storedOnly(Path dir, MatVec.DType stored, MatVec.DType dtype) {
        return dir + " holds " + name(stored) + " weights (a checkpoint made by 'dsmoe quantize'), which load only as "
                + name(stored) + ", not " + name(dtype) + "; load the fp32 checkpoint it was made from as " + name(dtype);
    }

    private static String name(MatVec.DType t) {
        return t.name().toLowerCase(Locale.ROOT);
    }

    /**
     * A model over an in-memory flat parameter buffer (e.g. freshly initialised weights for a
     * benchmark). F32 wraps the array (no copy: it must not change while in use); BF16 converts
     * into off-heap memory.
     */
    public static InferenceModel fromParams(ParamLayout layout, float[] params, MatVec.DType dtype) {
        return fromParams(layout, params, dtype, false);
    }

    /**
     * {@link #fromParams(ParamLayout, float[], MatVec.DType)}, with {@code offHeap} copying fp32
     * weights into native memory too, as a loaded checkpoint has them (mapped): a benchmark then
     * takes the kernels a checkpoint takes (oneDNN reads native fp32 weights only), and params may
     * be dropped once the model is made.
     */
    public static InferenceModel fromParams(ParamLayout layout, float[] params, MatVec.DType dtype, boolean offHeap) {
        ModelConfig config = layout.config();
        checkSupported(config);
        if (params.length != layout.totalSize()) {
            throw new IllegalArgumentException("parameter buffer has " + params.length + " floats, the layout needs "
                    + layout.totalSize());
        }
        Arena arena = Arena.ofShared();
        MemorySegment all = MemorySegment.ofArray(params);
        Source src = new Source() {
            @Override
            public TensorView weight(ParamLayout.Tensor t) {
                MemorySegment raw = all.asSlice(4L * t.offset(), 4L * t.numel());
                MemorySegment seg = converts(SafeTensors.DType.F32, dtype) ? convert(arena, raw, SafeTensors.DType.F32, dtype, t)
                        : offHeap ? arena.allocate(raw.byteSize(), 64).copyFrom(raw) : raw;
                return view(seg, dtype, t);
            }

            @Override
            public float[] floats(ParamLayout.Tensor t) {
                return Arrays.copyOfRange(params, t.off(), Math.toIntExact(t.end()));
            }
        };
        try {
            return new InferenceModel(layout, dtype, src, null, arena);
        } catch (IOException e) {
            throw new IllegalStateException(e); // in-memory sources do not do I/O
        }
    }

    /**
     * The most floats {@link Matmul}'s scratch grows to in an {@link Engine} of {@code c} with
     * weights of {@code dtype}: none for a type GEMM reads in place (fp32), else a block of the widest
     * matrix it multiplies by ({@code [rows, cols]} of every product an engine makes; the router
     * shapes are counted even without routers, a small overestimate).
     */
    static long gemmScratchFloats(ModelConfig c, MatVec.DType dtype) {
        long d = c.dEmb(), headW = (long) c.nHead() * c.dAtt(), kvW = (long) c.nKv() * c.dAtt(), ffd = c.dFfd();
        long h = c.routerHiddenSize(), experts = Math.max(c.nAtt(), c.nFfd());
        long[][] shapes = {{c.vocabSize(), d}, {kvW, d}, {headW, d}, {ffd, d}, {d, headW}, {d, ffd}, {h, d}, {experts, h},
                {experts, d},
                {d, (long) c.nAtt() * headW}}; // the MoA output experts side by side
        long most = 0;
        for (long[] s : shapes) most = Math.max(most, dtype.gemmScratchFloats(s[0], s[1]));
        return most;
    }

    /**
     * The GEMM scratch of one expert product (the largest expert weight's), which each worker
     * thread of {@link dev.dsmoe.kernels.Matmul#runs} holds. {@code Matmul.runs} spreads a step's
     * runs over the workers when there are several: a layer of several experts gives several
     * alone, a layer of one expert (Dense's MLP, a one-expert attention) only with several
     * sequences in the step ({@code batched}); 0 when no layer can.
     */
    static long expertGemmScratchFloats(ModelConfig c, MatVec.DType dtype, boolean batched) {
        long d = c.dEmb(), headW = (long) c.nHead() * c.dAtt(), ffd = c.dFfd();
        long most = 0;
        if (batched || c.nAtt() > 1) most = Math.max(dtype.gemmScratchFloats(headW, d), dtype.gemmScratchFloats(d, headW));
        if (batched || c.nFfd() > 1) {
            most = Math.max(most, Math.max(dtype.gemmScratchFloats(ffd, d), dtype.gemmScratchFloats(d, ffd)));
        }
        return most;
    }

    /**
     * What loading a model of {@code c} in {@code dtype} allocates: the norm gains as
     * {@code float[]} on the heap, and an off-heap copy of every weight stored in another type
     * ({@code stored} gives each tensor's type in the file; F32 for {@link #fromParams}). The
     * constructor itself runs, over a source that only counts. Not included: the mapped file
     * (its size) and, for {@link #fromParams}, the caller's parameter buffer.
     */
    public static Footprint footprint(ModelConfig c, MatVec.DType dtype, Function<String, SafeTensors.DType> stored) {
        long[] heap = {0, 0}, offHeap = {0}; // bytes and longest array; bytes
        Source counter = new Source() {
            @Override
            public TensorView weight(ParamLayout.Tensor t) {
                SafeTensors.DType s = stored.apply(t.name()); // null or not loadable: load will report it
                if (s != null && s.loadable && converts(s, dtype)) offHeap[0] = Math.addExact(offHeap[0], storedBytes(dtype, t));
                return view(MemorySegment.NULL, dtype, t);
            }

            @Override
            public float[] floats(ParamLayout.Tensor t) {
                heap[0] += Float.BYTES * t.numel();
                heap[1] = Math.max(heap[1], t.numel());
                return new float[0];
            }
        };
        try {
            new InferenceModel(ParamLayout.of(c), dtype, counter, null, null);
        } catch (IOException e) {
            throw new IllegalStateException(e); // the counter does no I/O
        }
        return Footprint.heap("norm gains", heap[0], heap[1]).plus(Footprint.offHeap("converted weights", offHeap[0]))
                .plus(Footprint.offHeap("MoA output experts side by side", sideBySideOutputBytes(c, dtype)));
    }

    /**
     * Whether a weight stored as {@code stored} is copied into {@code dtype} at load (else used in
     * place). Only a floating-point type is ever converted or used in place; any other (a future
     * I8 included, whatever {@code dtype} is) is refused, never taken as it is.
     */
    private static boolean converts(SafeTensors.DType stored, MatVec.DType dtype) {
        if (stored == ModelFiles.fileType(dtype)) return false; // F32, BF16, or a Q8_0 checkpoint's I8 quants
        if (!stored.loadable) throw new IllegalStateException("checkWeights admits " + stored + " only as " + dtype + "'s own");
        return true;
    }

    private static void checkSupported(ModelConfig c) {
        if (c.hiddenAct() != ModelConfig.Activation.GELU_TANH) {
            throw new IllegalArgumentException("hidden_act '" + c.hiddenAct().json()
                    + "' is not implemented by the inference engine yet; use \"gelu_tanh\"");
        }
    }

    private interface Source {
        TensorView weight(ParamLayout.Tensor t) throws IOException;

        float[] floats(ParamLayout.Tensor t) throws IOException;
    }

    /** A weight {@code [rows, cols]}, or {@code [N, rows, cols]} as N stacked experts, at the start of {@code seg}. */
    private static TensorView view(MemorySegment seg, MatVec.DType dtype, ParamLayout.Tensor t) {
        int[] m = matrix(t);
        return experts(dtype.view(seg, 0, m[0], m[1]), t);
    }

    /** The matrix {@code v} of weight {@code t} with its experts stacked along the rows when {@code t} has experts ({@code [N, rows, cols]}). */
    private static TensorView experts(TensorView v, ParamLayout.Tensor t) {
        int[] s = t.shape();
        return s.length == 3 ? v.stackedExperts(s[0]) : v;
    }

    /** The matrix a weight's view is: {@code [rows, cols]}, or {@code [N·rows, cols]} for N stacked experts. */
    private static int[] matrix(ParamLayout.Tensor t) {
        int[] s = t.shape();
        return s.length == 3 ? new int[] {s[0] * s[1], s[2]} : new int[] {s[0], s[1]};
    }

    /** Bytes of weight {@code t} converted into {@code dtype} (Q8_0: the quants and their scales). */
    private static long storedBytes(MatVec.DType dtype, ParamLayout.Tensor t) {
        int[] m = matrix(t);
        return dtype.bytes(m[0], m[1]);
    }

    /** Converts (or quantizes) weight {@code t} stored as {@code from} into a new segment of {@code to}, in parallel. */
    private static MemorySegment convert(Arena arena, MemorySegment src, SafeTensors.DType from, MatVec.DType to,
                                         ParamLayout.Tensor t) {
        int[] m = matrix(t);
        MemorySegment dst = arena.allocate(to.bytes(m[0], m[1]), 64);
        to.write(dst, m[0], m[1], i -> from.toFloat(src, i));
        return dst;
    }

    public ModelConfig config() {
        return config;
    }

    public MatVec.DType dtype() {
        return dtype;
    }

    /** The parameter counts of this model's layout. */
    ParamCounts counts() {
        return counts;
    }

    /** {@code embed_tokens [V, d]}. */
    public TensorView embed() {
        return weights.embedTokens();
    }

    /** The LM head's {@code [V, d]} matrix: {@code lm_head}, or {@code embed_tokens} when tied. */
    public TensorView output() {
        return weights.outputProjection();
    }

    /** The final norm's gain {@code [1, d]} (fp32). */
    public TensorView finalNorm() {
        return weights.finalNorm();
    }

    /**
     * Layer {@code l}'s MoA output projection with its experts side by side ({@code [d, N_att·w]}:
     * columns {@code [e·w, (e+1)·w)} are expert e's {@code oProj}), or null where the model keeps
     * none (see {@link #hasSideBySideOutputs}).
     */
    public TensorView attentionOutputSideBySide(int l) {
        return attentionOutputs[l];
    }

    /** Layer {@code l}'s weights; its routers are null for a layer type with one expert. */
    public ParamLayout.Layer<TensorView> layer(int l) {
        return weights.layer(l);
    }

    public int numLayers() {
        return weights.numLayers();
    }

    /**
     * Bytes of weights one token reads when, per layer, {@code activeAtt} attention and
     * {@code activeFfd} MLP experts are computed: the non-embedding parameters
     * ({@link ParamCounts#activePerToken}) plus the output projection, in this model's dtype.
     */
    public double weightBytesPerToken(double activeAtt, double activeFfd) {
        double params = counts.activePerToken(activeAtt, activeFfd) + (double) config.vocabSize() * config.dEmb();
        return params * dtype.bytesPerWeight;
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "%s model, %d layers, %s weights", config.nAtt() > 1 || config.nFfd() > 1
                ? "MoE" : "dense", config.numLayers(), dtype.name().toLowerCase(Locale.ROOT));
    }

    /** Unmaps the checkpoint and frees converted weights; the model must not be used afterwards. */
    @Override
    public void close() {
        arena.close();
        if (file != null) file.close();
    }
}
