package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** {@link InferenceModel#load} checks every tensor against config.json, naming the one that differs. */
class InferenceModelFilesTest {

    @Test
    void aTensorOfTheWrongShapeIsNamedWithWhatConfigJsonExpects(@TempDir Path dir) throws IOException {
        ModelConfig c = TinyModels.dsmoe();
        TinyModels.write(dir, c, TinyModels.params(ParamLayout.of(c), 1), SafeTensors.DType.BF16);
        ModelConfig wider = c.toBuilder().dFfd(c.dFfd() * 2).build();
        Files.writeString(dir.resolve(ModelFiles.CONFIG), ConfigJson.toJson(wider));
        IOException e = assertThrows(IOException.class, () -> InferenceModel.load(dir, MatVec.DType.F32).close());
        assertTrue(e.getMessage().endsWith("model.safetensors: tensor model.layers.0.mlp.up_proj.weight has shape ["
                + c.nFfd() + ", " + c.dFfd() + ", " + c.dEmb() + "], config.json expects [" + c.nFfd() + ", " + 2 * c.dFfd()
                + ", " + c.dEmb() + "]"), e.getMessage());
    }

    /**
     * Writes the quantized checkpoint of {@code src} (an fp32 or bf16 one) to {@code dir}, as
     * {@code dsmoe quantize} does.
     */
    static Path quantize(Path src, MatVec.DType dtype, Path dir) throws IOException {
        Files.createDirectories(dir);
        ModelConfig c = ModelFiles.readConfig(src);
        Files.writeString(dir.resolve(ModelFiles.CONFIG), ConfigJson.toJson(c, dtype));
        try (SafeTensors st = SafeTensors.open(src.resolve(ModelFiles.MODEL))) {
            ModelFiles.quantizedTensors(st, ParamLayout.of(c), dtype).write(dir.resolve(ModelFiles.MODEL));
        }
        return dir;
    }

    /**
     * A quantized checkpoint gives the logits, to the last bit, that quantizing the checkpoint it
     * was made from at load gives: prefill through GEMM (chunks of 16) and the mat-vec (the last
     * chunk of 4), then decode; rows of 4 and 8 columns (short Q8_0 blocks) included.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.dsmoe.infer.TinyModels#all")
    void aQuantizedCheckpointGivesTheLogitsOfQuantizingAtLoad(String name, ModelConfig c, @TempDir Path dir) throws IOException {
        float[] params = TinyModels.params(ParamLayout.of(c), 3);
        int[] tokens = TinyModels.tokens(36, c.vocabSize(), 4);
        for (SafeTensors.DType file : new SafeTensors.DType[] {SafeTensors.DType.F32, SafeTensors.DType.BF16}) {
            Path src = TinyModels.write(dir.resolve(file.name()), c, params, file);
            for (MatVec.DType dtype : new MatVec.DType[] {MatVec.DType.Q8_0, MatVec.DType.BF16}) {
                Path q = quantize(src, dtype, dir.resolve(file + "-" + dtype));
                String what = name + ", " + file + " file as " + dtype;
                try (InferenceModel atLoad = InferenceModel.load(src, dtype); InferenceModel stored = InferenceModel.load(q)) {
                    assertEquals(dtype, stored.dtype(), what);
                    Engine a = new Engine(atLoad, ExpertSelection.defaultFor(c), TinyModels.CONTEXT, 16);
                    Engine b = new Engine(stored, ExpertSelection.defaultFor(c), TinyModels.CONTEXT, 16);
                    assertArrayEquals(a.forwardAll(tokens), b.forwardAll(tokens), what);
                    for (int i = 0; i < 4; i++) assertArrayEquals(a.decode(tokens[i]), b.decode(tokens[i]), what + ", decode " + i);
                }
            }
        }
    }

    /** Loading a quantized checkpoint as another type than its own is refused, saying which it holds. */
    @Test
    void aQuantizedCheckpointLoadsOnlyInItsOwnType(@TempDir Path dir) throws IOException {
        ModelConfig c = TinyModels.dsmoe();
        Path src = TinyModels.write(dir.resolve("f32"), c, TinyModels.params(ParamLayout.of(c), 1), SafeTensors.DType.F32);
        Path q = quantize(src, MatVec.DType.Q8_0, dir.resolve("q8"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> InferenceModel.load(q, MatVec.DType.F32).close());
        assertTrue(e.getMessage().contains("holds q8_0 weights (a checkpoint made by 'dsmoe quantize'), which load only as q8_0, not f32"),
                e.getMessage());
        IOException notTrainable = assertThrows(IOException.class, () -> ModelFiles.readParams(q, ParamLayout.of(c)));
        assertTrue(notTrainable.getMessage().contains("no fp32 weights to train"), notTrainable.getMessage());
    }
}
