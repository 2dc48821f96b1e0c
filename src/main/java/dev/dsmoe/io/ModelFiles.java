package dev.dsmoe.io;

import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.HashSet;
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

    /** Reads and validates {@code dir/config.json}; errors name the file. */
    public static ModelConfig readConfig(Path dir) throws IOException {
        Path f = dir.resolve(CONFIG);
        if (!Files.isRegularFile(f)) {
            throw new NoSuchFileException(f + ": no config.json (is " + dir + " a model directory?)");
        }
        try {
            return ModelConfig.fromJson(Files.readString(f));
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
     * Reads every tensor of {@code layout}, once per name prefix, from {@code file} into that
     * prefix's buffer; a missing tensor, a wrong shape or a tensor the model does not have is an error.
     */
    public static void readTensors(Path file, ParamLayout layout, java.util.Map<String, float[]> byPrefix)
            throws IOException {
        try (SafeTensors st = SafeTensors.open(file)) {
            Set<String> expected = new HashSet<>();
            for (var e : byPrefix.entrySet()) {
                for (ParamLayout.Tensor t : layout.tensors()) {
                    expected.add(e.getKey() + t.name());
                    st.readFloats(e.getKey() + t.name(), t.shape(), e.getValue(), t.off());
                }
            }
            for (String name : st.tensors().keySet()) {
                if (!expected.contains(name)) {
                    throw new IOException(file + ": has tensor '" + name + "' that the model in config.json does not have");
                }
            }
        }
    }

    /** Loads {@code dir/model.safetensors} into a new flat buffer. */
    public static float[] readParams(Path dir, ParamLayout layout) throws IOException {
        float[] p = layout.newBuffer();
        readTensors(dir.resolve(MODEL), layout, java.util.Map.of("", p));
        return p;
    }

    /** Loads the AdamW moments of {@code dir/optimizer.safetensors}; returns their step count. */
    public static long readOptimizer(Path dir, ParamLayout layout, float[] m, float[] v) throws IOException {
        Path f = dir.resolve(OPTIMIZER);
        readTensors(f, layout, java.util.Map.of("exp_avg.", m, "exp_avg_sq.", v));
        try (SafeTensors st = SafeTensors.open(f)) {
            return Long.parseLong(st.metadata().getOrDefault("step", "0"));
        } catch (NumberFormatException e) {
            throw new IOException(f + ": metadata 'step' is not a number");
        }
    }
}
