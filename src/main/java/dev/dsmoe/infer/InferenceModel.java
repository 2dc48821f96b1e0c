package dev.dsmoe.infer;

import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.Bf16;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.function.Function;

/**
 * The weights of a model for inference: the config and a view of every tensor of
 * {@link ParamLayout} as a {@link Weight} over a memory segment. Weights are fp32 or bf16
 * ({@link MatVec.DType}, chosen at load); tensors already in that type are used in place (the
 * memory-mapped file, nothing copied), others are converted once into off-heap memory. Norm
 * gains are small and kept as {@code float[]}. Segments are shared: readable from any thread.
 */
public final class InferenceModel implements AutoCloseable {

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /**
     * A weight tensor {@code [experts, rows, cols]} (a plain matrix has {@code experts = 1}) of
     * {@code dtype} elements, row-major, starting at byte 0 of {@code segment}.
     */
    public record Weight(MemorySegment segment, MatVec.DType dtype, int experts, int rows, int cols) {
        /** Bytes of one expert's {@code [rows, cols]} matrix. */
        public long expertBytes() {
            return (long) rows * cols * dtype.bytes;
        }

        /** Byte offset of expert {@code e}'s matrix. */
        public long offset(int e) {
            return e * expertBytes();
        }

        public long bytes() {
            return experts * expertBytes();
        }
    }

    /** A router: linear ({@code hidden == null}, {@code out [N, d]}) or MLP ({@code hidden [256, d]}, {@code out [N, 256]}). */
    public record Router(Weight hidden, Weight out) {
        public boolean isMlp() {
            return hidden != null;
        }
    }

    /** One layer's weights; routers are null for a layer type with one expert. */
    public record Layer(float[] inputNorm, Router attnRouter, Weight q, Weight k, Weight v, Weight o,
                        float[] postAttnNorm, Router mlpRouter, Weight up, Weight down) {}

    private final ModelConfig config;
    private final MatVec.DType dtype;
    private final Weight embed;
    private final Weight output;
    private final float[] finalNorm;
    private final Layer[] layers;
    private final SafeTensors file;
    private final Arena arena;

    private InferenceModel(ModelConfig config, MatVec.DType dtype, Source src, SafeTensors file, Arena arena)
            throws IOException {
        this.config = config;
        this.dtype = dtype;
        this.file = file;
        this.arena = arena;
        ParamLayout layout = ParamLayout.of(config);
        embed = src.weight(layout.embedTokens());
        output = layout.lmHead() == null ? embed : src.weight(layout.lmHead());
        finalNorm = src.floats(layout.finalNorm());
        layers = new Layer[config.numLayers()];
        for (int l = 0; l < layers.length; l++) {
            ParamLayout.Layer<ParamLayout.Tensor> p = layout.layer(l);
            layers[l] = new Layer(src.floats(p.inputNorm()), router(src, p.attnRouter()), src.weight(p.qProj()),
                    src.weight(p.kProj()), src.weight(p.vProj()), src.weight(p.oProj()), src.floats(p.postAttnNorm()),
                    router(src, p.mlpRouter()), src.weight(p.upProj()), src.weight(p.downProj()));
        }
    }

    private static Router router(Source src, ParamLayout.Router<ParamLayout.Tensor> r) throws IOException {
        if (r == null) return null;
        return new Router(r.hidden() == null ? null : src.weight(r.hidden()), src.weight(r.out()));
    }

    /**
     * Loads {@code dir/config.json} and memory-maps {@code dir/model.safetensors}, both of one
     * checkpoint ({@link ModelFiles#openCheckpoint}); weights end up in {@code dtype}. Missing
     * files, missing or extra tensors and wrong shapes or types are IOExceptions naming the file
     * and the tensor.
     */
    public static InferenceModel load(Path dir, MatVec.DType dtype) throws IOException {
        ModelFiles.Checkpoint ckpt = ModelFiles.openCheckpoint(dir);
        ModelConfig config = ckpt.config();
        SafeTensors st = ckpt.model();
        Arena arena = Arena.ofShared();
        try {
            checkSupported(config);
            ParamLayout layout = ParamLayout.of(config);
            ModelFiles.checkTensors(st, layout, List.of(""));
            Source src = new Source() {
                @Override
                public Weight weight(ParamLayout.Tensor t) throws IOException {
                    SafeTensors.Info info = st.info(t.name());
                    MemorySegment raw = st.segment(t.name());
                    MemorySegment seg = converts(info.dtype(), dtype) ? convert(arena, raw, info.dtype(), dtype, t.numel()) : raw;
                    return view(seg, dtype, t);
                }

                @Override
                public float[] floats(ParamLayout.Tensor t) throws IOException {
                    float[] a = new float[Math.toIntExact(t.numel())];
                    st.readFloats(t.name(), t.shape(), a, 0);
                    return a;
                }
            };
            return new InferenceModel(config, dtype, src, st, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            st.close();
            throw e;
        }
    }

    /**
     * A model over an in-memory flat parameter buffer (e.g. freshly initialised weights for a
     * benchmark). F32 wraps the array (no copy: it must not change while in use); BF16 converts
     * into off-heap memory.
     */
    public static InferenceModel fromParams(ParamLayout layout, float[] params, MatVec.DType dtype) {
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
            public Weight weight(ParamLayout.Tensor t) {
                MemorySegment raw = all.asSlice(4L * t.offset(), 4L * t.numel());
                MemorySegment seg = converts(SafeTensors.DType.F32, dtype) ? convert(arena, raw, SafeTensors.DType.F32, dtype, t.numel()) : raw;
                return view(seg, dtype, t);
            }

            @Override
            public float[] floats(ParamLayout.Tensor t) {
                return Arrays.copyOfRange(params, t.off(), Math.toIntExact(t.end()));
            }
        };
        try {
            return new InferenceModel(config, dtype, src, null, arena);
        } catch (IOException e) {
            throw new IllegalStateException(e); // in-memory sources do not do I/O
        }
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
            public Weight weight(ParamLayout.Tensor t) {
                SafeTensors.DType s = stored.apply(t.name()); // null: not in the file, which load will report
                if (s != null && converts(s, dtype)) offHeap[0] = Math.addExact(offHeap[0], t.numel() * dtype.bytes);
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
            new InferenceModel(c, dtype, counter, null, null);
        } catch (IOException e) {
            throw new IllegalStateException(e); // the counter does no I/O
        }
        return Footprint.heap("norm gains", heap[0], heap[1]).plus(Footprint.offHeap("converted weights", offHeap[0]));
    }

    /** Whether a weight stored as {@code stored} is copied into {@code dtype} at load (else used in place). */
    private static boolean converts(SafeTensors.DType stored, MatVec.DType dtype) {
        return switch (stored) {
            case F32 -> dtype != MatVec.DType.F32;
            case BF16 -> dtype != MatVec.DType.BF16;
            case F16 -> true;
            default -> throw new IllegalStateException("checkTensors admits floating point only, not " + stored);
        };
    }

    private static void checkSupported(ModelConfig c) {
        if (c.hiddenAct() != ModelConfig.Activation.GELU_TANH) {
            throw new IllegalArgumentException("hidden_act '" + c.hiddenAct().json()
                    + "' is not implemented by the inference engine yet; use \"gelu_tanh\"");
        }
    }

    private interface Source {
        Weight weight(ParamLayout.Tensor t) throws IOException;

        float[] floats(ParamLayout.Tensor t) throws IOException;
    }

    private static Weight view(MemorySegment seg, MatVec.DType dtype, ParamLayout.Tensor t) {
        int[] s = t.shape();
        return s.length == 3 ? new Weight(seg, dtype, s[0], s[1], s[2]) : new Weight(seg, dtype, 1, s[0], s[1]);
    }

    /** Converts {@code n} elements of {@code from} into a new segment of {@code to}, in parallel chunks. */
    private static MemorySegment convert(Arena arena, MemorySegment src, SafeTensors.DType from, MatVec.DType to, long n) {
        MemorySegment dst = arena.allocate(n * to.bytes, 64);
        int chunk = 1 << 16;
        int chunks = Math.toIntExact((n + chunk - 1) / chunk);
        Parallel.forRange(chunks, 1, (c0, c1) -> {
            for (long i = (long) c0 * chunk; i < Math.min(n, (long) c1 * chunk); i++) {
                float f = switch (from) {
                    case F32 -> src.getAtIndex(F32, i);
                    case BF16 -> Bf16.toFloat(src.getAtIndex(I16, i));
                    case F16 -> Float.float16ToFloat(src.getAtIndex(I16, i));
                    default -> throw new IllegalStateException("not a floating-point type: " + from);
                };
                if (to == MatVec.DType.F32) dst.setAtIndex(F32, i, f);
                else dst.setAtIndex(I16, i, Bf16.fromFloat(f));
            }
        });
        return dst;
    }

    public ModelConfig config() {
        return config;
    }

    public MatVec.DType dtype() {
        return dtype;
    }

    /** {@code embed_tokens [V, d]}. */
    public Weight embed() {
        return embed;
    }

    /** The LM head's {@code [V, d]} matrix: {@code lm_head}, or {@code embed_tokens} when tied. */
    public Weight output() {
        return output;
    }

    public float[] finalNorm() {
        return finalNorm;
    }

    public Layer layer(int l) {
        return layers[l];
    }

    public int numLayers() {
        return layers.length;
    }

    /** Copies row {@code token} of the embedding into {@code x[xOff..xOff+d)} as fp32. */
    public void embedRow(int token, float[] x, int xOff) {
        int d = embed.cols();
        long off = (long) token * d * dtype.bytes;
        if (dtype == MatVec.DType.F32) {
            MemorySegment.copy(embed.segment(), F32, off, x, xOff, d);
        } else {
            for (int i = 0; i < d; i++) x[xOff + i] = Bf16.toFloat(embed.segment().get(I16, off + 2L * i));
        }
    }

    /**
     * Bytes of weights one token reads when, per layer, {@code activeAtt} attention and
     * {@code activeFfd} MLP experts are computed: the non-embedding parameters
     * ({@link ModelConfig#activeParamsPerToken}) plus the output projection, in this model's dtype.
     */
    public double weightBytesPerToken(double activeAtt, double activeFfd) {
        double params = config.activeParamsPerToken(activeAtt, activeFfd) + (double) config.vocabSize() * config.dEmb();
        return params * dtype.bytes;
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
