package dev.dsmoe.cli;

import dev.dsmoe.io.AtomicFiles;
import dev.dsmoe.io.CheckpointFiles;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.train.TrainerState;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ./dsmoe quantize}: a model directory's weights as Q8_0 or BF16, written as a new model
 * directory that the inference verbs map in place ({@link ModelFiles#quantizedTensors} has the
 * format). Checks, progress and the summary; the quantizing is {@link MatVec.DType#write}'s.
 */
@Command(name = "quantize", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a copy of a model directory with its weights quantized: q8_0 (int8 in llama.cpp's Q8_0 "
                + "blocks of 32 weights, one fp32 scale each: 1.125 bytes a weight) or bf16 (2 bytes a weight). generate, "
                + "eval, bench infer and serve load the copy memory-mapped, with no conversion, in its own type: the same weights, "
                + "bit for bit, as --dtype q8_0|bf16 gives at load from the fp32 checkpoint.",
                "Norm gains stay fp32; tokenizer.json and trainer_state.json (where eval finds the data) are copied. A "
                        + "quantized copy cannot be trained on or quantized again. --out must be new or empty; it is "
                        + "written as one atomic change (a kill leaves no partial model)."})
final class QuantizeCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "DIR",
            description = "The checkpoint to quantize (config.json and model.safetensors in fp32, bf16 or f16, as training writes).")
    Path model;

    private MatVec.DType dtype;

    @Option(names = "--dtype", required = true, paramLabel = "q8_0|bf16",
            description = "The weights' type in the copy: q8_0 (int8, one fp32 scale per 32 weights of a row) or bf16.")
    void dtype(String name) {
        MatVec.DType t;
        try {
            t = MatVec.DType.parse(name);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--dtype: unknown weight type '" + name + "': use q8_0 or bf16");
        }
        if (t == MatVec.DType.F32) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--dtype " + name
                    + ": checkpoints are fp32 already; quantize writes q8_0 or bf16");
        }
        dtype = t;
    }

    @Option(names = "--out", required = true, paramLabel = "DIR",
            description = "The new model directory: one that does not exist yet, or an empty one.")
    Path out;

    @Override
    public Integer call() throws Exception {
        String q = ComputeOptions.Dtype.label(dtype);
        if (!Files.isDirectory(model)) throw new Errors.UserError("--model " + model + ": no such directory");
        for (String f : List.of(ModelFiles.CONFIG, ModelFiles.MODEL)) {
            if (!Files.isRegularFile(model.resolve(f))) {
                throw new Errors.UserError("--model " + model + ": no " + f + " (a model directory holds config.json, "
                        + "model.safetensors and tokenizer.json)");
            }
        }
        if (out.toAbsolutePath().normalize().equals(model.toAbsolutePath().normalize())
                || Files.exists(out) && Files.isSameFile(out, model)) {
            throw new Errors.UserError("--out " + out + " is the --model directory: quantize writes a new model directory "
                    + "and leaves the checkpoint as it is; give another --out");
        }
        MatVec.DType already = ModelFiles.readStored(model).quantization();
        if (already != null) {
            throw new Errors.UserError("--model " + model + " is already quantized (" + ComputeOptions.Dtype.label(already)
                    + " weights, made by 'dsmoe quantize'); quantize the fp32 checkpoint it was made from");
        }
        checkOut();

        long start = System.nanoTime();
        long bytes;
        try (ModelFiles.Checkpoint ckpt = ModelFiles.openCheckpoint(model)) {
            ModelConfig config = ckpt.config();
            if (ckpt.quantization() != null) { // replaced by a quantized one since it was read above
                throw new Errors.UserError("--model " + model + " is already quantized; quantize the fp32 checkpoint it was made from");
            }
            SafeTensors.Writer weights = ModelFiles.quantizedTensors(ckpt.model(), ParamLayout.of(config), dtype);
            bytes = weights.dataBytes();
            Terminal.Progress display = new Terminal.Progress("dsmoe quantize: ", false);
            weights.progress(done -> {
                if (!display.due(done, bytes, false)) return;
                double secs = (System.nanoTime() - start) / 1e9, f = done / (double) Math.max(1, bytes);
                display.show(String.format(Locale.ROOT, "%s %s %.2f/%.2f GB %s", q, Terminal.bar(done, bytes), done / 1e9,
                        bytes / 1e9, Terminal.eta(secs, f)));
            });
            CheckpointFiles files = new CheckpointFiles(out)
                    .text(ModelFiles.CONFIG, ConfigJson.toJson(config, dtype) + "\n")
                    .safetensors(ModelFiles.MODEL, weights);
            for (String f : List.of(ModelFiles.TOKENIZER, TrainerState.FILE)) {
                Path src = model.resolve(f);
                if (Files.isRegularFile(src)) files.file(f, ch -> copy(src, ch));
            }
            files.commit();
        } finally {
            Terminal.clearStatus();
        }
        double secs = (System.nanoTime() - start) / 1e9;
        long written = Files.size(out.resolve(ModelFiles.MODEL)), original = Files.size(model.resolve(ModelFiles.MODEL));
        System.out.printf(Locale.ROOT, "dsmoe quantize: wrote %s: %s weights, %s %.3f GB (%.1f%% of %s's %.3f GB), %s%n", out, q,
                ModelFiles.MODEL, written / 1e9, 100.0 * written / original, model, original / 1e9, Terminal.seconds(secs));
        if (!Files.isRegularFile(out.resolve(ModelFiles.TOKENIZER))) {
            System.err.println("dsmoe quantize: note: " + model + " has no " + ModelFiles.TOKENIZER
                    + "; generate needs one: copy the tokenizer.json of the model's data into " + out);
        }
        return 0;
    }

    /**
     * {@code --out} must not exist, or be an empty directory: one holding nothing but the lock and
     * the temporary files a killed quantize or save left (the commit removes those), so nothing
     * there is ever replaced.
     */
    private void checkOut() throws IOException {
        if (!Files.exists(out)) return;
        if (!Files.isDirectory(out)) throw new Errors.UserError("--out " + out + " exists and is not a directory; give a new directory");
        try (Stream<Path> s = Files.list(out)) {
            Path other = s.filter(p -> !AtomicFiles.isTemp(p) && !p.getFileName().toString().equals(CheckpointFiles.LOCK))
                    .findFirst().orElse(null);
            if (other != null) {
                throw new Errors.UserError("--out " + out + " exists and is not empty (it holds " + other.getFileName()
                        + "); quantize writes a new model directory and never replaces one: give a new or empty --out");
            }
        }
    }

    /** Copies the file {@code src} to the channel of the file being written. */
    private static void copy(Path src, FileChannel ch) throws IOException {
        try (FileChannel in = FileChannel.open(src, StandardOpenOption.READ)) {
            long size = in.size();
            for (long pos = 0; pos < size; ) pos += in.transferTo(pos, size - pos, ch);
        }
    }
}
