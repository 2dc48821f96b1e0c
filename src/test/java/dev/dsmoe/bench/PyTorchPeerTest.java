package dev.dsmoe.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.RandomParams;
import dev.dsmoe.model.Transformer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The PyTorch peer (bench/pytorch_peer.py, Debian's python3-torch) computes the same loss as our
 * training forward for each family (and the MLP router), on the same weights and tokens, within 1e-4 relative.
 * Skipped when python3-torch is not installed: the engine never needs it.
 */
class PyTorchPeerTest {

    @Test
    void peerLossEqualsOursForEveryFamily() throws Exception {
        PyTorchPeer peer = new PyTorchPeer(Path.of("bench", "pytorch_peer.py"));
        assumeTrue(peer.available(), () -> "skipped: " + peer.unavailableReason());
        for (String preset : new String[] {"dense-small", "smoe-small", "dsmoe-small", "dsmoe-small+mlp-router"}) {
            boolean mlpRouter = preset.endsWith("+mlp-router");
            ModelConfig base = ModelConfig.preset(preset.replace("+mlp-router", ""));
            ModelConfig c = base.withVocabSize(97).withDEmb(32).withNumLayers(2)
                    .withAttention(base.nAtt(), base.nHead(), base.nKv(), 8).withMlp(base.nFfd(), Math.max(4, base.dFfd() / 16))
                    .withMaxPositions(32);
            if (mlpRouter) c = c.withRouter(ModelConfig.RouterKind.MLP).withRouterHiddenSize(12);
            c = c.validate();
            ParamLayout layout = ParamLayout.of(c);
            float[] p = RandomParams.params(layout, 3);
            int batch = 2, seq = 16;
            int[] in = RandomParams.tokens(batch * seq, c.vocabSize(), 4);
            int[] tgt = RandomParams.tokens(batch * seq, c.vocabSize(), 5);
            tgt[7] = -1;
            double ours = new Transformer(layout, p, layout.newBuffer()).forward(in, tgt, batch, seq).total();
            JsonNode theirs = peer.loss(layout, p, in, tgt, batch);
            assertEquals(theirs.path("loss_total").asDouble(), ours, 1e-4 * Math.abs(ours), preset);
        }
    }
}
