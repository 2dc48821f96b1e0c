package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

class SimdTest {

    @Test
    void expAndTanhMatchDoublePrecisionAndTheirScalarTwins() {
        SplittableRandom r = new SplittableRandom(1);
        float[] x = new float[Simd.L];
        float[] y = new float[Simd.L];
        for (int it = 0; it < 20_000; it++) {
            for (int i = 0; i < x.length; i++) x[i] = (float) (r.nextDouble() * 200 - 100) * (it % 3 == 0 ? 0.01f : 1f);
            Simd.exp(FloatVector.fromArray(Simd.S, x, 0)).intoArray(y, 0);
            for (int i = 0; i < x.length; i++) {
                double want = Math.exp(x[i]);
                if (x[i] < -87.3f) want = 0;
                if (x[i] > 88.3762626647949f) want = Double.POSITIVE_INFINITY;
                if (Double.isInfinite(want)) assertEquals(Float.POSITIVE_INFINITY, y[i]);
                else assertEquals(want, y[i], 3e-7 * want + 1e-37, "exp(" + x[i] + ")");
                assertEquals(Float.floatToIntBits(Simd.exp(x[i])), Float.floatToIntBits(y[i]), "scalar twin of exp");
            }
            Simd.tanh(FloatVector.fromArray(Simd.S, x, 0)).intoArray(y, 0);
            for (int i = 0; i < x.length; i++) {
                assertEquals(Math.tanh(x[i]), y[i], 3e-7 * Math.abs(Math.tanh(x[i])) + 1e-9, "tanh(" + x[i] + ")");
                assertEquals(Float.floatToIntBits(Simd.tanh(x[i])), Float.floatToIntBits(y[i]), "scalar twin of tanh");
            }
        }
        assertTrue(Float.isNaN(Simd.exp(Float.NaN)));
    }

    @Test
    void addLanesSumsEveryLaneInAFixedPairwiseOrder() {
        float[] x = new float[Simd.L];
        for (int i = 0; i < x.length; i++) x[i] = 1f / (i + 1) + (i % 2 == 0 ? 1e7f : 0f);
        // The same pairwise tree written out: lane i + lane (i + w), w = L/2, L/4, ..., 1.
        float[] t = x.clone();
        for (int w = Simd.L / 2; w >= 1; w /= 2) {
            float[] n = new float[Simd.L];
            for (int i = 0; i < Simd.L; i++) n[i] = t[i] + t[(i + w) % Simd.L];
            t = n;
        }
        assertEquals(Float.floatToIntBits(t[0]), Float.floatToIntBits(Simd.addLanes(FloatVector.fromArray(Simd.S, x, 0))));
    }
}
