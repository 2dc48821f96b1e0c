package dev.dsmoe.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.RandomParams;
import dev.dsmoe.model.Transformer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The PyTorch peer (bench/pytorch_peer.py, Debian's python3-torch) computes the same losses as our
 * training forward for each family (and the MLP router), on the same weights and tokens: the LM
 * loss and each router's auxiliary loss (summed over layers, unweighted) apart, then the total.
 * The aux terms are a few thousandths of the total, so a total-only check at any tolerance the
 * float32 forward meets would miss a wrong sign or factor in them. Skipped when python3-torch is
 * not installed: the engine never needs it.
 */
class PyTorchPeerTest {

    /** Relative tolerance of each part: the float32 forward is within 4e-8 of the peer's float64 one. */
    private static final double REL = 1e-6;

    @Test
    void peerLossesEqualOursForEveryFamily() throws Exception {
        PyTorchPeer peer = new PyTorchPeer(Path.of("bench", "pytorch_peer.py"));
        assumeTrue(peer.available(), () -> "skipped: " + peer.unavailableReason());
        for (String preset : new String[] {"dense-small", "smoe-small", "dsmoe-small", "dsmoe-small+mlp-router"}) {
            boolean mlpRouter = preset.endsWith("+mlp-router");
            ModelConfig base = ModelPresets.get(preset.replace("+mlp-router", ""));
            ModelConfig c = base.toBuilder().vocabSize(97).dEmb(32).numLayers(2).dAtt(8)
                    .dFfd(Math.max(4, base.dFfd() / 16)).maxPositions(32).build();
            if (mlpRouter) c = c.toBuilder().router(ModelConfig.RouterKind.MLP).routerHiddenSize(12).build();
            c = c.validate();
            ParamLayout layout = ParamLayout.of(c);
            float[] p = RandomParams.params(layout, 3);
            int batch = 2, seq = 16;
            int[] in = RandomParams.tokens(batch * seq, c.vocabSize(), 4);
            int[] tgt = RandomParams.tokens(batch * seq, c.vocabSize(), 5);
            tgt[7] = -1;
            Transformer.Loss ours = new Transformer(layout, p, layout.newBuffer()).forward(in, tgt, batch, seq);
            JsonNode theirs = peer.loss(layout, p, in, tgt, batch);

            double lm = theirs.path("loss_lm").asDouble();
            double lmTol = REL * Math.abs(lm);
            assertEquals(lm, ours.lm(), lmTol, preset + " LM loss");
            double totalTol = lmTol;
            totalTol += auxPart(preset + " attention", theirs.path("aux_att").asDouble(), ours.auxAttention(),
                    c.nAtt() > 1 && c.auxLoss() != ModelConfig.AuxLoss.NONE, c.auxWeightAtt());
            totalTol += auxPart(preset + " MLP", theirs.path("aux_mlp").asDouble(), ours.auxMlp(),
                    c.nFfd() > 1 && c.auxLoss() != ModelConfig.AuxLoss.NONE, c.auxWeightFfd());
            // a weighted aux term that is there must stand out of the total's tolerance too
            for (double w : new double[] {c.auxWeightAtt() * theirs.path("aux_att").asDouble(),
                    c.auxWeightFfd() * theirs.path("aux_mlp").asDouble()}) {
                assertTrue(w == 0 || Math.abs(w) > 4 * totalTol,
                        preset + ": weighted aux " + w + " hides in the total's tolerance " + totalTol);
            }
            assertEquals(theirs.path("loss_total").asDouble(), ours.total(), totalTol, preset + " total loss");
        }
    }

    /**
     * Checks one router kind's aux loss; returns its weighted tolerance for the total. Where the
     * family has that loss it must be far from 0 (else a wrong sign or factor would pass).
     */
    private static double auxPart(String what, double theirs, double ours, boolean present, double weight) {
        if (!present) {
            assertEquals(0.0, theirs, what + " aux loss (peer)");
            assertEquals(0.0, ours, what + " aux loss");
            return 0;
        }
        double tol = REL * Math.abs(theirs) + 1e-6; // MI = -H(e) + H(e|x) cancels: an absolute floor
        assertTrue(Math.abs(theirs) > 20 * tol, what + " aux loss " + theirs + " too near 0 to tell a sign");
        assertEquals(theirs, ours, tol, what + " aux loss");
        return weight * tol;
    }
}
