package dev.dsmoe.eval;

import dev.dsmoe.data.TokenDtype;
import dev.dsmoe.data.TokenShard;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelConfig.Activation;
import dev.dsmoe.model.ModelConfig.AuxLoss;
import dev.dsmoe.model.ModelConfig.RouterKind;
import dev.dsmoe.model.ModelConfig.TrainingRouting;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.RandomParams;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/** Tiny random models and hand-made token shards for the eval tests. */
final class EvalFixtures {

    private EvalFixtures() {}

    static final int VOCAB = 41, CONTEXT = 24;

    /** A tiny DS-MoE: 2 attention experts, 4 MLP experts, 2 layers. */
    static ModelConfig dsmoe() {
        return new ModelConfig(VOCAB, 16, 2, 2, 2, 1, 4, 4, 8, Activation.GELU_TANH, CONTEXT, 10000.0, 1e-5, true,
                RouterKind.LINEAR, 256, TrainingRouting.DENSE, 2, AuxLoss.MI, 0.05, 0.05).validate();
    }

    static ModelConfig dense() {
        return new ModelConfig(VOCAB, 16, 1, 1, 4, 2, 4, 1, 32, Activation.GELU_TANH, CONTEXT, 10000.0, 1e-5, true,
                RouterKind.LINEAR, 256, TrainingRouting.DENSE, 2, AuxLoss.NONE, 0.0, 0.0).validate();
    }

    static ModelConfig smoe() {
        return new ModelConfig(VOCAB, 16, 1, 1, 4, 2, 4, 4, 8, Activation.GELU_TANH, CONTEXT, 10000.0, 1e-5, true,
                RouterKind.LINEAR, 256, TrainingRouting.TOP_K, 2, AuxLoss.SWITCH, 0.0, 0.05).validate();
    }

    /** Random weights with std 0.3 (norm gains 1 ± 0.2), so routing is far from uniform. */
    static InferenceModel model(ModelConfig c, long seed) {
        ParamLayout layout = ParamLayout.of(c);
        return InferenceModel.fromParams(layout, RandomParams.params(layout, seed), MatVec.DType.F32);
    }

    static int[] randomTokens(int n, int vocab, long seed) {
        return RandomParams.tokens(n, vocab, seed);
    }

    /** Writes {@code tokens} as a uint16 shard and maps it. */
    static TokenShard shard(Path file, int[] tokens) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(tokens.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        for (int t : tokens) b.putShort((short) t);
        Files.write(file, b.array());
        return TokenShard.open(file, TokenDtype.UINT16, tokens.length);
    }
}
