package dev.dsmoe.infer;

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
}
