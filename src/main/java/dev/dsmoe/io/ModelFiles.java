package dev.dsmoe.io;

import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * A model directory in Hugging Face form: {@code config.json} and {@code model.safetensors} with
 * the tensor names and shapes of {@link ParamLayout}; training adds {@code optimizer.safetensors}
 * (AdamW moments as {@code exp_avg.NAME} and {@code exp_avg_sq.NAME}). A quantized checkpoint
 * ({@code dsmoe quantize}; {@link ConfigJson#QUANTIZATION} in config.json) stores each weight
 * matrix as BF16, or as Q8_0: its int8 quants as an I8 tensor of the weight's name and shape and
 * its fp32 scales as {@code NAME.scale}, one per 32 weights of a row ({@link #checkWeights}).
 */
public final class ModelFiles {
    public static final String CONFIG = "config.json";
    public static final String MODEL = "model.safetensors";
    public static final String OPTIMIZER = "optimizer.safetensors";
    public static final String TOKENIZER = "tokenizer.json";

    private ModelFiles() {}

    /**
     * Reads and validates {@code dir/config.json}; errors name the file. An interrupted checkpoint
     * save in {@code dir} is finished first, or refused ({@link CheckpointFiles#requireWhole}).
     */
    public static ModelConfig readConfig(Path dir) throws IOException {
        return readStored(dir).config();
    }

    /**
     * {@link #readConfig} and the type a quantized checkpoint's weights are stored in
     * ({@link ConfigJson#QUANTIZATION}; null for an fp32 checkpoint).
     */
    public static ConfigJson.Stored readStored(Path dir) throws IOException {
        CheckpointFiles.requireWhole(dir);
        return readConfigFile(dir);
    }

    private static ConfigJson.Stored readConfigFile(Path dir) throws IOException {
        Path f = dir.resolve(CONFIG);
        if (!Files.isRegularFile(f)) {
            throw new NoSuchFileException(f + ": no config.json (is " + dir + " a model directory?)");
        }
        try {
            return ConfigJson.read(Files.readString(f));
        } catch (IllegalArgumentException e) {
            throw new IOException(f + ": " + e.getMessage(), e);
        }
    }

    /** All parameters as fp32 tensors, in layout order. */
    public static SafeTensors.Writer modelTensors(ParamLayout layout, float[] params, SafeTensors.DType dtype) {
        SafeTensors.Writer w = new SafeTensors.Writer().metadata("format", "pt");
        for (ParamLayout.Tensor t : layout.tensors()) w.add(t.name(), dtype, t.shape(), params, t.off());
        return w;
    }

    /** AdamW moments with the step count in the metadata. */
    public static SafeTensors.Writer optimizerTensors(ParamLayout layout, float[] m, float[] v, long steps) {
        SafeTensors.Writer w = new SafeTensors.Writer().metadata("format", "pt").metadata("step", Long.toString(steps));
        for (ParamLayout.Tensor t : layout.tensors()) w.add("exp_avg." + t.name(), SafeTensors.DType.F32, t.shape(), m, t.off());
        for (ParamLayout.Tensor t : layout.tensors()) w.add("exp_avg_sq." + t.name(), SafeTensors.DType.F32, t.shape(), v, t.off());
        return w;
    }

    /**
     * {@code dir}'s config and its memory-mapped {@code model.safetensors}, from one checkpoint;
     * {@code quantization}: the type its weights are stored in when it is quantized, else null.
     */
    public record Checkpoint(ModelConfig config, MatVec.DType quantization, SafeTensors model) implements AutoCloseable {
        @Override
        public void close() {
            model.close();
        }
    }

    /**
     * Opens {@code dir}'s config and weights as one checkpoint: an interrupted save is finished or
     * refused first ({@link CheckpointFiles#requireWhole}), and the pair is read again if a save
     * replaced either file meanwhile (each save renames new files over both).
     */
    public static Checkpoint openCheckpoint(Path dir) throws IOException {
        Path cfg = dir.resolve(CONFIG), model = dir.resolve(MODEL);
        for (int attempt = 1; ; attempt++) {
            CheckpointFiles.requireWhole(dir);
            List<Object> before = List.of(identity(cfg), identity(model));
            ConfigJson.Stored config = readConfigFile(dir);
            SafeTensors st = SafeTensors.open(model);
            if (!Files.exists(dir.resolve(CheckpointFiles.JOURNAL))
                    && before.equals(List.of(identity(cfg), identity(model)))) {
                return new Checkpoint(config.config(), config.quantization(), st);
            }
            st.close();
            if (attempt == 50) {
                throw new IOException(dir + ": the checkpoint changed every time it was read (a run saving there at every step?); try again");
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted while reading " + dir);
            }
        }
    }

    /** What tells one version of a file from the next: a save renames a new file (a new inode) over it. */
    private static Object identity(Path f) throws IOException {
        try {
            BasicFileAttributes a = Files.readAttributes(f, BasicFileAttributes.class);
            return List.of(String.valueOf(a.fileKey()), a.size(), a.lastModifiedTime(), a.creationTime());
        } catch (NoSuchFileException e) {
            return "missing";
        }
    }

    /**
     * Checks that {@code st} holds exactly the tensors of {@code layout}, once per name prefix,
     * each of the shape config.json implies and of a floating-point type; the message names the
     * file and the tensor.
     */
    public static void checkTensors(SafeTensors st, ParamLayout layout, List<String> prefixes) throws IOException {
        Set<String> expected = new HashSet<>();
        for (String prefix : prefixes) {
            for (ParamLayout.Tensor t : layout.tensors()) {
                String name = prefix + t.name();
                expected.add(name);
                SafeTensors.Info info = st.tensors().get(name);
                if (info == null) {
                    throw new IOException(st.path() + ": has no tensor " + name + ", which config.json implies");
                }
                if (!Arrays.equals(info.shape(), t.shape())) {
                    throw new IOException(st.path() + ": tensor " + name + " has shape " + Arrays.toString(info.shape())
                            + ", config.json expects " + Arrays.toString(t.shape()));
                }
                if (!info.dtype().loadable) {
                    throw new IOException(st.path() + ": tensor " + name + " has dtype " + info.dtype()
                            + ", config.json's model needs floating point (F32, BF16 or F16)");
                }
            }
        }
        for (String name : st.tensors().keySet()) {
            if (!expected.contains(name)) {
                throw new IOException(st.path() + ": has tensor " + name + " that the model in config.json does not have");
            }
        }
    }

    // ------------------------------------------------------------------ quantized checkpoints

    /** The name of the F32 tensor holding the scales of weight {@code name} in a Q8_0 checkpoint. */
    public static String scaleName(String name) {
        return name + ".scale";
    }

    /** The safetensors type a weight of {@code dtype} is stored as: F32, BF16, or I8 (Q8_0's quants). */
    public static SafeTensors.DType fileType(MatVec.DType dtype) {
        return switch (dtype) {
            case F32 -> SafeTensors.DType.F32;
            case BF16 -> SafeTensors.DType.BF16;
            case Q8_0 -> SafeTensors.DType.I8;
        };
    }

    /** The shape of weight {@code t}'s scales in {@code dtype}: its own with the last dimension in blocks. */
    public static int[] scaleShape(ParamLayout.Tensor t, MatVec.DType dtype) {
        int[] s = t.shape();
        s[s.length - 1] = Math.toIntExact(dtype.scalesPerRow(s[s.length - 1]));
        return s;
    }

    /** Whether tensor {@code t} is stored quantized in a quantized checkpoint: every weight matrix; norm gains stay fp32. */
    public static boolean quantized(ParamLayout.Tensor t) {
        return t.role() != ParamLayout.Role.NORM;
    }

    /**
     * Checks the weights file of a checkpoint: {@link #checkTensors} for an fp32 one
     * ({@code quantization} null); for one quantized to {@code quantization}, that it holds
     * exactly each norm gain as F32, each other weight as {@link #fileType} in its shape, and (Q8_0)
     * its scales {@link #scaleName} as F32 of {@link #scaleShape}. The message names the file and
     * the tensor.
     */
    public static void checkWeights(SafeTensors st, ParamLayout layout, MatVec.DType quantization) throws IOException {
        if (quantization == null) {
            checkTensors(st, layout, List.of(""));
            return;
        }
        String q = quantization.name().toLowerCase(java.util.Locale.ROOT);
        Set<String> expected = new HashSet<>();
        for (ParamLayout.Tensor t : layout.tensors()) {
            boolean quant = quantized(t);
            SafeTensors.DType type = quant ? fileType(quantization) : SafeTensors.DType.F32;
            expect(st, t.name(), type, t.shape(), q + " checkpoint", expected);
            if (quant && quantization.scaleBlock > 0) {
                expect(st, scaleName(t.name()), SafeTensors.DType.F32, scaleShape(t, quantization),
                        q + " weight " + Arrays.toString(t.shape()), expected);
            }
        }
        for (String name : st.tensors().keySet()) {
            if (!expected.contains(name)) {
                throw new IOException(st.path() + ": has tensor " + name + " that the " + q + " model in config.json does not have");
            }
        }
    }

    private static void expect(SafeTensors st, String name, SafeTensors.DType type, int[] shape, String needer,
                               Set<String> expected) throws IOException {
        expected.add(name);
        SafeTensors.Info info = st.tensors().get(name);
        if (info == null) throw new IOException(st.path() + ": has no tensor " + name + ", which the " + needer + " needs");
        if (info.dtype() != type) {
            throw new IOException(st.path() + ": tensor " + name + " has dtype " + info.dtype() + ", a " + needer
                    + " needs " + type);
        }
        if (!Arrays.equals(info.shape(), shape)) {
            throw new IOException(st.path() + ": tensor " + name + " has shape " + Arrays.toString(info.shape()) + ", a "
                    + needer + " needs " + Arrays.toString(shape));
        }
    }

    /**
     * The weights of the checkpoint {@code src} (of {@code layout}, checked with
     * {@link #checkTensors}) quantized to {@code to} (Q8_0 or BF16), ready to write: each weight
     * matrix in {@link #fileType} (Q8_0: its quants as I8 of the weight's shape, then its scales as
     * F32 {@link #scaleName} of {@link #scaleShape}), each norm gain as F32, in layout order. A
     * weight is read from the mapped file and quantized by {@link MatVec.DType#write} (what loading
     * with that type does) when the file is written, one tensor at a time in off-heap memory.
     */
    public static SafeTensors.Writer quantizedTensors(SafeTensors src, ParamLayout layout, MatVec.DType to) throws IOException {
        if (to == MatVec.DType.F32) throw new IllegalArgumentException("f32 is no quantization");
        checkTensors(src, layout, List.of(""));
        SafeTensors.Writer w = new SafeTensors.Writer().metadata("format", "pt");
        for (ParamLayout.Tensor t : layout.tensors()) {
            if (!quantized(t)) {
                float[] gain = new float[Math.toIntExact(t.numel())];
                src.readFloats(t.name(), t.shape(), gain, 0);
                w.add(t.name(), SafeTensors.DType.F32, t.shape(), gain, 0);
                continue;
            }
            Quantized q = new Quantized(src.segment(t.name()), src.info(t.name()).dtype(), to, t);
            w.add(t.name(), fileType(to), t.shape(), q::writeElements);
            if (to.scaleBlock > 0) w.add(scaleName(t.name()), SafeTensors.DType.F32, scaleShape(t, to), q::writeScales);
        }
        return w;
    }

    /**
     * One weight being quantized as the file is written: {@link #writeElements} quantizes it into
     * off-heap memory ({@link MatVec.DType#write}'s layout) and writes its elements, {@link #writeScales}
     * its scales (right after), then frees it.
     */
    private static final class Quantized {
        private final MemorySegment src;
        private final SafeTensors.DType from;
        private final MatVec.DType to;
        private final int rows, cols;
        private Arena arena;
        private MemorySegment data;

        Quantized(MemorySegment src, SafeTensors.DType from, MatVec.DType to, ParamLayout.Tensor t) {
            this.src = src;
            this.from = from;
            this.to = to;
            int[] s = t.shape();
            this.rows = s.length == 3 ? Math.multiplyExact(s[0], s[1]) : s[0];
            this.cols = s[s.length - 1];
        }

        void writeElements(FileChannel ch) throws IOException {
            arena = Arena.ofShared(); // MatVec.DType.write fills it from several threads
            boolean written = false;
            try {
                data = arena.allocate(to.bytes(rows, cols), 64);
                to.write(data, rows, cols, i -> from.toFloat(src, i));
                SafeTensors.Writer.write(ch, data.asSlice(0, (long) rows * cols * to.elementBytes));
                written = true;
            } finally {
                if (!written || to.scaleBlock == 0) free(); // the scales are written next, from the same memory
            }
        }

        void writeScales(FileChannel ch) throws IOException {
            try {
                SafeTensors.Writer.write(ch, data.asSlice(to.scaleOffset(rows, cols), 4 * rows * to.scalesPerRow(cols)));
            } finally {
                free();
            }
        }

        private void free() {
            if (arena != null) arena.close();
            arena = null;
            data = null;
        }
    }

    /**
     * Reads every tensor of {@code layout}, once per name prefix, from {@code file} into that
     * prefix's buffer, after {@link #checkTensors}.
     */
    public static void readTensors(Path file, ParamLayout layout, java.util.Map<String, float[]> byPrefix)
            throws IOException {
        try (SafeTensors st = SafeTensors.open(file)) {
            checkTensors(st, layout, List.copyOf(byPrefix.keySet()));
            for (var e : byPrefix.entrySet()) {
                for (ParamLayout.Tensor t : layout.tensors()) st.readFloats(e.getKey() + t.name(), t.shape(), e.getValue(), t.off());
            }
        }
    }

    /** Loads {@code dir/model.safetensors} into a new flat buffer; a quantized checkpoint is refused ({@link #requireTrainable}). */
    public static float[] readParams(Path dir, ParamLayout layout) throws IOException {
        requireTrainable(dir);
        float[] p = layout.newBuffer();
        readTensors(dir.resolve(MODEL), layout, java.util.Map.of("", p));
        return p;
    }

    /**
     * Refuses, in one line, a checkpoint made by {@code dsmoe quantize}: it has no fp32 weights
     * (nor AdamW moments) to train on. Finishes an interrupted save first, as {@link #readConfig}.
     */
    public static void requireTrainable(Path dir) throws IOException {
        MatVec.DType q = readStored(dir).quantization();
        if (q != null) {
            throw new IOException(dir + " holds a quantized checkpoint (" + q.name().toLowerCase(java.util.Locale.ROOT)
                    + " weights, made by 'dsmoe quantize'): it has no fp32 weights to train; resume the training run it was made from");
        }
    }

    /** Loads the AdamW moments of {@code dir/optimizer.safetensors}; returns their step count. */
    public static long readOptimizer(Path dir, ParamLayout layout, float[] m, float[] v) throws IOException {
        CheckpointFiles.requireWhole(dir);
        Path f = dir.resolve(OPTIMIZER);
        readTensors(f, layout, java.util.Map.of("exp_avg.", m, "exp_avg_sq.", v));
        try (SafeTensors st = SafeTensors.open(f)) {
            return Long.parseLong(st.metadata().getOrDefault("step", "0"));
        } catch (NumberFormatException e) {
            throw new IOException(f + ": metadata 'step' is not a number");
        }
    }
}
