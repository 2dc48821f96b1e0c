package dev.dsmoe.io;

import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
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
 * (AdamW moments as {@code exp_avg.NAME} and {@code exp_avg_sq.NAME}).
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
        CheckpointFiles.requireWhole(dir);
        return readConfigFile(dir);
    }

    private static ModelConfig readConfigFile(Path dir) throws IOException {
        Path f = dir.resolve(CONFIG);
        if (!Files.isRegularFile(f)) {
            throw new NoSuchFileException(f + ": no config.json (is " + dir + " a model directory?)");
        }
        try {
            return ConfigJson.fromJson(Files.readString(f));
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

    /** {@code dir}'s config and its memory-mapped {@code model.safetensors}, from one checkpoint. */
    public record Checkpoint(ModelConfig config, SafeTensors model) implements AutoCloseable {
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
            ModelConfig config = readConfigFile(dir);
            SafeTensors st = SafeTensors.open(model);
            if (!Files.exists(dir.resolve(CheckpointFiles.JOURNAL))
                    && before.equals(List.of(identity(cfg), identity(model)))) {
                return new Checkpoint(config, st);
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

    /** Loads {@code dir/model.safetensors} into a new flat buffer. */
    public static float[] readParams(Path dir, ParamLayout layout) throws IOException {
        CheckpointFiles.requireWhole(dir);
        float[] p = layout.newBuffer();
        readTensors(dir.resolve(MODEL), layout, java.util.Map.of("", p));
        return p;
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
