package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.model.ParamLayout.Role;
import dev.dsmoe.model.ParamLayout.Tensor;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** {@link Init} over a {@link ParamLayout}. */
class ParamLayoutInitTest {

    private static float[] init(ParamLayout p, long seed) {
        float[] w = p.newBuffer();
        Init.initialize(p, w, seed);
        return w;
    }

    @Test
    void sameSeedGivesBitwiseIdenticalBuffersWhateverTheThreadCount() {
        ParamLayout p = ParamLayout.of(ModelPresets.get("dsmoe-small"));
        float[] a = init(p, 1234);
        int threads = Parallel.threads();
        float[] b;
        try {
            Parallel.setThreads(1);
            b = init(p, 1234);
        } finally {
            Parallel.setThreads(threads);
        }
        assertArrayEquals(a, b); // float equality here is bitwise: no NaNs are produced
        for (int i = 0; i < a.length; i++) {
            if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) throw new AssertionError("index " + i);
        }
        float[] c = init(p, 1235);
        assertFalse(Arrays.equals(a, c));
    }

    @Test
    void matricesAreNormalWithStd002AndResidualOutputsAreScaled() {
        ModelConfig cfg = ModelPresets.get("dense-small"); // 4 layers
        ParamLayout p = ParamLayout.of(cfg);
        float[] w = init(p, 42);
        // up_proj: 262144 values; the std estimate has relative error ~ 1/sqrt(2n) = 0.14%
        assertNormal(w, p.tensor("model.layers.1.mlp.up_proj.weight"), 0.02);
        assertNormal(w, p.byRole().embedTokens(), 0.02);
        assertNormal(w, p.tensor("model.layers.2.attn.o_proj.weight"), 0.02 / Math.sqrt(8));
        assertNormal(w, p.tensor("model.layers.3.mlp.down_proj.weight"), 0.02 / Math.sqrt(8));
        assertEquals(0.02 / Math.sqrt(8), Init.std(p.byRole().layer(0).downProj(), cfg), 1e-15);
    }

    @Test
    void routersAreNormalWithStd002() {
        ModelConfig cfg = ModelConfigTest.tiny().toBuilder().dEmb(2048).nAtt(16).nHead(2).nKv(1).dAtt(4).nFfd(32).dFfd(8).build();
        ParamLayout p = ParamLayout.of(cfg);
        float[] w = init(p, 7);
        assertNormal(w, p.byRole().layer(0).mlpRouter().out(), 0.02); // 32 x 2048
        assertNormal(w, p.byRole().layer(0).attnRouter().out(), 0.02); // 16 x 2048
    }

    @Test
    void normGainsAreExactlyOneAndNothingIsLeftZero() {
        ParamLayout p = ParamLayout.of(ModelPresets.get("dsmoe-small").toBuilder().tieWordEmbeddings(false).build());
        float[] w = init(p, 3);
        int zeros = 0;
        for (Tensor t : p.tensors()) {
            for (int i = t.off(); i < t.end(); i++) {
                if (t.role() == Role.NORM) assertEquals(1.0f, w[i], t.name());
                else if (w[i] == 0f) zeros++;
                else assertTrue(Math.abs(w[i]) < 0.02 * 7 && w[i] != 1.0f, t.name());
            }
        }
        assertTrue(zeros < 3, "zeros: " + zeros);
    }

    @Test
    void bufferOfTheWrongSizeIsRejected() {
        ParamLayout p = ParamLayout.of(ModelConfigTest.tiny());
        String msg = assertThrows(IllegalArgumentException.class, () -> Init.initialize(p, new float[3], 1))
                .getMessage();
        assertEquals("parameter buffer has 3 floats, the layout needs " + p.totalSize(), msg);
    }

    /** Mean within 5 standard errors of 0, std within 2%, and about 68.3% of values within one std. */
    private static void assertNormal(float[] w, Tensor t, double std) {
        int n = Math.toIntExact(t.numel());
        double sum = 0, sq = 0;
        int inside = 0;
        for (int i = t.off(); i < t.end(); i++) {
            sum += w[i];
            sq += (double) w[i] * w[i];
            if (Math.abs(w[i]) < std) inside++;
        }
        double mean = sum / n;
        double sd = Math.sqrt(sq / n - mean * mean);
        assertEquals(0.0, mean, 5 * std / Math.sqrt(n), t.name() + " mean");
        assertEquals(std, sd, 0.02 * std, t.name() + " std");
        assertEquals(0.6827, inside / (double) n, 0.02, t.name() + " fraction within 1 std");
    }
}
