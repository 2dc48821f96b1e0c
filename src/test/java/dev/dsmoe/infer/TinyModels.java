package dev.dsmoe.infer;

import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelConfig.Activation;
import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.RandomParams;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.params.provider.Arguments;

/** Tiny random models of the three families, written to a directory as a checkpoint. */
final class TinyModels {

    private TinyModels() {}

    static final int CONTEXT = 48;
    /** The MLP router's hidden width (not ModuleFormer's 256, to test that the key is read). */
    static final int ROUTER_HIDDEN = 24;

    static ModelConfig tiny(int nAtt, int nHead, int nKv, int nFfd, int dFfd, RouterKind router,
                            TrainingRouting routing, AuxLoss aux, boolean tied) {
        return new ModelConfig(37, 16, 2, nAtt, nHead, nKv, 4, nFfd, dFfd, Activation.GELU_TANH, CONTEXT,
                10000.0, 1e-5, tied, router, ROUTER_HIDDEN, routing, 2, aux, nAtt > 1 ? 0.05 : 0.0, nFfd > 1 ? 0.05 : 0.0).validate();
    }

    static ModelConfig dense() {
        return tiny(1, 4, 2, 1, 32, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.NONE, true);
    }

    static ModelConfig smoe() {
        return tiny(1, 4, 2, 4, 8, RouterKind.LINEAR, TrainingRouting.TOP_K, AuxLoss.SWITCH, true);
    }

    static ModelConfig dsmoe() {
        return tiny(4, 2, 1, 6, 8, RouterKind.LINEAR, TrainingRouting.DENSE, AuxLoss.MI, true);
    }

    static ModelConfig dsmoeMlpRouter() {
        return tiny(3, 2, 2, 4, 8, RouterKind.MLP, TrainingRouting.DENSE, AuxLoss.MI, false);
    }

    /**
     * DS-MoE with two attention experts of w = 2 heads x 16 = 32 columns, a Q8_0 block: the one
     * tiny model whose MoA output experts every format keeps side by side too
     * ({@link InferenceModel#attentionOutputSideBySide}; the others' w = 8 leaves Q8_0 without).
     */
    static ModelConfig dsmoeBlockWideExperts() {
        return new ModelConfig(37, 16, 2, 2, 2, 1, 16, 4, 8, Activation.GELU_TANH, CONTEXT, 10000.0, 1e-5, true,
                RouterKind.LINEAR, ROUTER_HIDDEN, TrainingRouting.DENSE, 2, AuxLoss.MI, 0.05, 0.05).validate();
    }

    /** Models whose default routing is dense (Dense and DS-MoE). */
    static Stream<Arguments> denseRouted() {
        return Stream.of(
                Arguments.of("dense (N_kv<N_head)", dense()),
                Arguments.of("ds-moe (N_kv<N_head)", dsmoe()),
                Arguments.of("ds-moe MLP router, untied", dsmoeMlpRouter()),
                Arguments.of("ds-moe, attention experts a Q8_0 block wide", dsmoeBlockWideExperts()));
    }

    /** All families. */
    static Stream<Arguments> all() {
        return Stream.concat(denseRouted(), Stream.of(Arguments.of("smoe top-2", smoe())));
    }

    /** Parameters with std 0.3 (norm gains 1 ± 0.2): {@link RandomParams#params}. */
    static float[] params(ParamLayout layout, long seed) {
        return RandomParams.params(layout, seed);
    }

    static int[] tokens(int n, int vocab, long seed) {
        return RandomParams.tokens(n, vocab, seed);
    }

    /** Writes config.json and model.safetensors (in {@code dtype}) of the params to {@code dir}. */
    static Path write(Path dir, ModelConfig c, float[] params, SafeTensors.DType dtype) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve(ModelFiles.CONFIG), ConfigJson.toJson(c));
        ModelFiles.modelTensors(ParamLayout.of(c), params, dtype).write(dir.resolve(ModelFiles.MODEL));
        return dir;
    }

    static InferenceModel load(Path dir, ModelConfig c, float[] params) throws IOException {
        return InferenceModel.load(write(dir, c, params, SafeTensors.DType.F32), MatVec.DType.F32);
    }
}
