package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

class SimdTest {

    @Test
    void expAndTanhMatchDoublePrecisionAndTheVectorLoopsMatchTheScalarTwins() {
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
            for (int i = 0; i < x.length; i++) {
                float t = Simd.tanh(x[i]);
                assertEquals(Math.tanh(x[i]), t, 3e-7 * Math.abs(Math.tanh(x[i])) + 1e-9, "tanh(" + x[i] + ")");
            }
            // the loops with exp written out give the scalar twin's bits
            float shift = x[0];
            float sum = Simd.expShiftStore(x, 0, y, 0, x.length, shift);
            float want = 0;
            for (int i = 0; i < x.length; i++) {
                assertEquals(Float.floatToIntBits(Simd.exp(x[i] - shift)), Float.floatToIntBits(y[i]), "expShiftStore");
            }
            assertEquals(Float.floatToIntBits(Simd.addLanes(FloatVector.fromArray(Simd.S, y, 0))), Float.floatToIntBits(sum));
            assertEquals(Float.floatToIntBits(sum), Float.floatToIntBits(Simd.sumExp(x, 0, x.length, shift)), "sumExp");
            // GELU's vector loop (tanh and exp written out) against its scalar tail, element by element
            float[] g = new float[x.length];
            float[] one = new float[1];
            Gelu.forward(x, 0, g, 0, x.length);
            for (int i = 0; i < x.length; i++) {
                Gelu.forward(x, i, one, 0, 1);
                assertEquals(Float.floatToIntBits(one[0]), Float.floatToIntBits(g[i]), "gelu vector vs scalar at " + x[i]);
            }
            Gelu.backward(x, 0, y, 0, g, 0, x.length, false);
            for (int i = 0; i < x.length; i++) {
                Gelu.backward(x, i, y, i, one, 0, 1, false);
                assertEquals(Float.floatToIntBits(one[0]), Float.floatToIntBits(g[i]), "gelu' vector vs scalar at " + x[i]);
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
