package dev.dsmoe.model;

import dev.dsmoe.kernels.F32Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Every parameter of a model as a named view into one flat fp32 buffer (docs/ARCHITECTURE.md,
 * "Flat parameters"). Gradients and AdamW moments use buffers of the same size and layout.
 *
 * <p>Tensors, in this order (file order; shapes row-major {@code [out, in]} like PyTorch):
 * <pre>
 * model.embed_tokens.weight                       [V, d]
 * for each layer L:
 *   model.layers.L.input_layernorm.weight         [d]
 *   model.layers.L.attn.router.weight             [N_att, d]                (linear router, N_att &gt; 1)
 *   model.layers.L.attn.router.0.weight           [H, d]                    (mlp router, N_att &gt; 1)
 *   model.layers.L.attn.router.2.weight           [N_att, H]                (mlp router, N_att &gt; 1)
 *   model.layers.L.attn.q_proj.weight             [N_att, N_head*D_att, d]
 *   model.layers.L.attn.k_proj.weight             [N_kv*D_att, d]
 *   model.layers.L.attn.v_proj.weight             [N_kv*D_att, d]
 *   model.layers.L.attn.o_proj.weight             [N_att, d, N_head*D_att]
 *   model.layers.L.post_attention_layernorm.weight [d]
 *   model.layers.L.mlp.router(.0|.2).weight       as for attn, with N_ffd   (N_ffd &gt; 1)
 *   model.layers.L.mlp.up_proj.weight             [N_ffd, D_ffd, d]
 *   model.layers.L.mlp.down_proj.weight           [N_ffd, d, D_ffd]
 * model.norm.weight                               [d]
 * lm_head.weight                                  [V, d]                    (absent when tied)
 * </pre>
 * The MLP router names are PyTorch {@code nn.Sequential} indices (0 = first Linear,
 * 1 = activation, 2 = second Linear), as ModuleFormer's {@code Linear -> GELU -> Linear} would
 * be saved.
 *
 * <p>Weight decay: every matrix decays (embedding, routers, projections, an untied lm_head);
 * the tied embedding decays once, as the one tensor it is. Norm gains do not decay.
 *
 * <p>Offsets are {@code long} because the 3B and 6B presets have more parameters than a Java
 * array holds; {@link #newBuffer()} and {@link Tensor#off()} give {@code int}s for layouts that
 * fit one {@code float[]} and fail with a clear message otherwise.
 */
public final class ParamLayout {

    /** The largest {@code float[]} the JVM reliably allocates. */
    public static final long MAX_ARRAY_LENGTH = Integer.MAX_VALUE - 8;

    /** What a tensor is, for initialisation, weight decay and parameter accounting. */
    public enum Role {
        EMBEDDING, NORM, ROUTER, ATTENTION_EXPERT, ATTENTION_SHARED_KV, MLP_EXPERT, LM_HEAD
    }

    /**
     * One parameter tensor: {@code numel} floats at {@code [offset, offset + numel)} of the flat
     * buffer, row-major with {@code shape}. {@code layer} is -1 for tensors outside the layers.
     */
    public record Tensor(String name, long offset, int[] shape, long numel, Role role, int layer,
            boolean weightDecay) {

        public Tensor {
            shape = shape.clone();
        }

        /** A copy of the shape. */
        @Override
        public int[] shape() {
            return shape.clone();
        }

        /** Dimension {@code i} of the shape. */
        public int dim(int i) {
            return shape[i];
        }

        /** Number of dimensions. */
        public int rank() {
            return shape.length;
        }

        /** The offset as an {@code int} index into a {@code float[]} buffer. */
        public int off() {
            if (offset + numel > MAX_ARRAY_LENGTH) {
                throw new IllegalStateException(name + " ends at " + (offset + numel)
                        + ", beyond what a float[] can index; use a long-indexed buffer");
            }
            return (int) offset;
        }

        /** One past the last element, {@code offset + numel}. */
        public long end() {
            return offset + numel;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Tensor t && name.equals(t.name) && offset == t.offset
                    && Arrays.equals(shape, t.shape) && numel == t.numel && role == t.role
                    && layer == t.layer && weightDecay == t.weightDecay;
        }

        @Override
        public int hashCode() {
            return name.hashCode() * 31 + Long.hashCode(offset);
        }

        @Override
        public String toString() {
            return name + " " + Arrays.toString(shape) + " @" + offset;
        }
    }

    /**
     * A router's tensors, as descriptors ({@link Tensor}) or as views. Linear router:
     * {@code hidden == null}, {@code out} is {@code router.weight [N, d]}. MLP router:
     * {@code hidden} is {@code router.0.weight [H, d]} and {@code out} is
     * {@code router.2.weight [N, H]}, H = {@code router_hidden_size}.
     */
    public record Router<T>(T hidden, T out) {
        <U, X extends Exception> Router<U> map(Mapping<T, U, X> f) throws X {
            return new Router<>(hidden == null ? null : f.apply(hidden), f.apply(out));
        }
    }

    /**
     * The tensors of one layer, as descriptors ({@link Tensor}) or as views, so that model code
     * never builds names or offsets in its hot path. {@code attnRouter} is null when N_att = 1 and
     * {@code mlpRouter} when N_ffd = 1.
     */
    public record Layer<T>(int index, T inputNorm, Router<T> attnRouter, T qProj, T kProj, T vProj,
            T oProj, T postAttnNorm, Router<T> mlpRouter, T upProj, T downProj) {

        <U, X extends Exception> Layer<U> map(Mapping<T, U, X> f) throws X {
            return new Layer<>(index, f.apply(inputNorm), attnRouter == null ? null : attnRouter.map(f),
                    f.apply(qProj), f.apply(kProj), f.apply(vProj), f.apply(oProj), f.apply(postAttnNorm),
                    mlpRouter == null ? null : mlpRouter.map(f), f.apply(upProj), f.apply(downProj));
        }
    }

    /**
     * Every tensor of a model by its role, as T: descriptors, the views of a training buffer
     * ({@link #views}), or an inference model's weights. An untied {@code lm_head} is reached as
     * {@link #outputProjection()} (null in {@code lmHead} when tied).
     */
    public static final class Weights<T> {
        private final T embedTokens, finalNorm, lmHead;
        private final Layer<T>[] layers; // an array, not a List: footprint checks walk the fields

        Weights(T embedTokens, Layer<T>[] layers, T finalNorm, T lmHead) {
            this.embedTokens = embedTokens;
            this.layers = layers;
            this.finalNorm = finalNorm;
            this.lmHead = lmHead;
        }

        public T embedTokens() {
            return embedTokens;
        }

        public Layer<T> layer(int l) {
            return layers[l];
        }

        public int numLayers() {
            return layers.length;
        }

        public T finalNorm() {
            return finalNorm;
        }

        /** The {@code [V, d]} matrix the LM head multiplies by: lm_head, or embed_tokens when tied. */
        public T outputProjection() {
            return lmHead != null ? lmHead : embedTokens;
        }

        /** Every tensor made into a U by {@code f}, in file order. */
        @SuppressWarnings("unchecked")
        <U, X extends Exception> Weights<U> map(Mapping<T, U, X> f) throws X {
            U embed = f.apply(embedTokens);
            Layer<U>[] ls = new Layer[layers.length];
            for (int l = 0; l < layers.length; l++) ls[l] = layers[l].map(f);
            U norm = f.apply(finalNorm);
            return new Weights<>(embed, ls, norm, lmHead == null ? null : f.apply(lmHead));
        }
    }

    /** Turns a descriptor into what a {@link Weights} holds (a view, a loaded weight). */
    @FunctionalInterface
    public interface Mapping<T, U, X extends Exception> {
        U apply(T t) throws X;
    }

    private final ModelConfig config;
    private final List<Tensor> tensors;
    private final Map<String, Tensor> byName;
    private final Weights<Tensor> byRole;
    private final long totalSize;

    @SuppressWarnings("unchecked")
    private ParamLayout(ModelConfig config) {
        this.config = config;
        Builder b = new Builder();
        int d = config.dEmb();
        int v = config.vocabSize();
        Tensor embedTokens = b.add("model.embed_tokens.weight", Role.EMBEDDING, -1, v, d);
        Layer<Tensor>[] layers = new Layer[config.numLayers()];
        int qRows = config.nHead() * config.dAtt();
        int kvRows = config.nKv() * config.dAtt();
        for (int l = 0; l < layers.length; l++) {
            String p = "model.layers." + l + ".";
            Tensor inNorm = b.add(p + "input_layernorm.weight", Role.NORM, l, d);
            Router<Tensor> attnRouter = router(b, p + "attn.router", l, config.nAtt());
            Tensor q = b.add(p + "attn.q_proj.weight", Role.ATTENTION_EXPERT, l, config.nAtt(), qRows, d);
            Tensor k = b.add(p + "attn.k_proj.weight", Role.ATTENTION_SHARED_KV, l, kvRows, d);
            Tensor vv = b.add(p + "attn.v_proj.weight", Role.ATTENTION_SHARED_KV, l, kvRows, d);
            Tensor o = b.add(p + "attn.o_proj.weight", Role.ATTENTION_EXPERT, l, config.nAtt(), d, qRows);
            Tensor postNorm = b.add(p + "post_attention_layernorm.weight", Role.NORM, l, d);
            Router<Tensor> mlpRouter = router(b, p + "mlp.router", l, config.nFfd());
            Tensor up = b.add(p + "mlp.up_proj.weight", Role.MLP_EXPERT, l, config.nFfd(), config.dFfd(), d);
            Tensor down = b.add(p + "mlp.down_proj.weight", Role.MLP_EXPERT, l, config.nFfd(), d, config.dFfd());
            layers[l] = new Layer<>(l, inNorm, attnRouter, q, k, vv, o, postNorm, mlpRouter, up, down);
        }
        Tensor finalNorm = b.add("model.norm.weight", Role.NORM, -1, d);
        Tensor lmHead = config.tieWordEmbeddings() ? null : b.add("lm_head.weight", Role.LM_HEAD, -1, v, d);
        byRole = new Weights<>(embedTokens, layers, finalNorm, lmHead);
        tensors = Collections.unmodifiableList(b.list);
        byName = Collections.unmodifiableMap(b.map);
        totalSize = b.next;
    }

    private Router<Tensor> router(Builder b, String prefix, int layer, int n) {
        if (n == 1) return null;
        int d = config.dEmb();
        return switch (config.router()) {
            case LINEAR -> new Router<>(null, b.add(prefix + ".weight", Role.ROUTER, layer, n, d));
            case MLP -> {
                int h = config.routerHiddenSize();
                Tensor hidden = b.add(prefix + ".0.weight", Role.ROUTER, layer, h, d);
                yield new Router<>(hidden, b.add(prefix + ".2.weight", Role.ROUTER, layer, n, h));
            }
        };
    }

    private static final class Builder {
        final List<Tensor> list = new ArrayList<>();
        final Map<String, Tensor> map = new LinkedHashMap<>();
        long next;

        Tensor add(String name, Role role, int layer, int... shape) {
            long numel = 1;
            for (int s : shape) numel = Math.multiplyExact(numel, (long) s);
            Tensor t = new Tensor(name, next, shape, numel, role, layer, role != Role.NORM);
            next = Math.addExact(next, numel);
            list.add(t);
            map.put(name, t);
            return t;
        }
    }

    /** The layout of {@code config}, which is validated first. */
    public static ParamLayout of(ModelConfig config) {
        return new ParamLayout(config.validate());
    }

    public ModelConfig config() {
        return config;
    }

    /** All tensors in file order; offsets increase and tile {@code [0, totalSize())} without gaps. */
    public List<Tensor> tensors() {
        return tensors;
    }

    /** The tensor called {@code name}; an unknown name is an error naming it. */
    public Tensor tensor(String name) {
        Tensor t = byName.get(name);
        if (t == null) {
            throw new IllegalArgumentException("no parameter tensor named \"" + name + "\" in this "
                    + tensors.size() + "-tensor layout (e.g. " + tensors.get(0).name() + ", "
                    + (byRole.numLayers() > 0 ? byRole.layer(0).qProj().name() : byRole.finalNorm().name()) + ")");
        }
        return t;
    }

    /** Whether a tensor called {@code name} exists. */
    public boolean contains(String name) {
        return byName.containsKey(name);
    }

    /** Every tensor by role, as its descriptor. */
    public Weights<Tensor> byRole() {
        return byRole;
    }

    /** Every tensor by role, each made into a U by {@code f} (a view, a loaded weight), in file order. */
    public <U, X extends Exception> Weights<U> map(Mapping<Tensor, U, X> f) throws X {
        return byRole.map(f);
    }

    /**
     * Every tensor as an fp32 view into {@code buffer} (the parameters, or their gradients):
     * matrices {@code [out, in]}, expert tensors {@code [N, out, in]} as {@code [N·out, in]} with
     * the experts stacked along the rows, norm gains {@code [1, d]}.
     */
    public Weights<F32Tensor> views(float[] buffer) {
        if (buffer.length != totalSize) {
            throw new IllegalArgumentException("a buffer of this layout has " + totalSize + " floats, got " + buffer.length);
        }
        return map(t -> view(buffer, t));
    }

    private static F32Tensor view(float[] buffer, Tensor t) {
        return switch (t.rank()) {
            case 1 -> F32Tensor.of(buffer, t.off(), 1, t.dim(0));
            case 2 -> F32Tensor.of(buffer, t.off(), t.dim(0), t.dim(1));
            default -> F32Tensor.of(buffer, t.off(), t.dim(0) * t.dim(1), t.dim(2)).stackedExperts(t.dim(0));
        };
    }

    /** Number of floats in the flat buffer: every parameter ({@link ParamCounts#total()}). */
    public long totalSize() {
        return totalSize;
    }

    /** Whether the whole layout fits in one {@code float[]}. */
    public boolean fitsInArray() {
        return totalSize <= MAX_ARRAY_LENGTH;
    }

    /** A zeroed buffer of this layout (parameters, gradients, AdamW moments). */
    public float[] newBuffer() {
        if (!fitsInArray()) {
            throw new IllegalStateException("this model has " + totalSize
                    + " parameters, more than one float[] holds (" + MAX_ARRAY_LENGTH + ")");
        }
        return new float[(int) totalSize];
    }

    /** Number of parameters that get weight decay (all but the norm gains). */
    public long decayedParams() {
        long n = 0;
        for (Tensor t : tensors) if (t.weightDecay()) n += t.numel();
        return n;
    }
}
