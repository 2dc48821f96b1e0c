package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class AdamWTest {

    /** PyTorch AdamW, written out in double. */
    static void refStep(double[] p, double[] g, double[] m, double[] v, int from, int to,
                        double lr, double b1, double b2, double eps, double wd, int step) {
        for (int i = from; i < to; i++) {
            p[i] -= lr * wd * p[i];
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            double mhat = m[i] / (1 - Math.pow(b1, step));
            double vhat = v[i] / (1 - Math.pow(b2, step));
            p[i] -= lr * mhat / (Math.sqrt(vhat) + eps);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129, 100_003})
    void stepsMatchHandWrittenDoubleReference(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        float[] p = uniform(rnd, n, 1.0), m = new float[n], v = new float[n];
        double[] pd = toDouble(p), md = new double[n], vd = new double[n];
        float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
        for (int step = 1; step <= 5; step++) {
            float[] g = uniform(rnd, n, step == 3 ? 1e-6 : 1.0);
            AdamW.update(p, g, m, v, 0, n, lr, b1, b2, eps, wd, step);
            refStep(pd, toDouble(g), md, vd, 0, n, lr, b1, b2, eps, wd, step);
        }
        assertClose("m", md, m, 1e-7, 1e-5);
        assertClose("v", vd, v, 1e-9, 1e-5);
        assertClose("p", pd, p, 1e-6, 1e-5);
    }

    @Test
    void firstStepMovesEachParameterByLearningRate() {
        // with bias correction the first step is lr * sign(g) (plus decay), whatever |g|
        float[] p = {1f, 1f, -2f}, g = {1e-3f, -50f, 7f}, m = new float[3], v = new float[3];
        AdamW.update(p, g, m, v, 0, 3, 0.1f, 0.9f, 0.999f, 1e-12f, 0f, 1);
        assertArrayEquals(new float[] {0.9f, 1.1f, -2.1f}, p, 1e-5f);
    }

    @Test
    void onlyTheGivenRangeChangesAndDecayIsPerRange() {
        SplittableRandom rnd = new SplittableRandom(2);
        int n = 50;
        float[] p = uniform(rnd, n, 1.0), g = uniform(rnd, n, 1.0), m = new float[n], v = new float[n];
        float[] p0 = p.clone();
        double[] pd = toDouble(p), md = new double[n], vd = new double[n], gd = toDouble(g);
        AdamW.update(p, g, m, v, 10, 30, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.5f, 1); // weights: decayed
        AdamW.update(p, g, m, v, 30, 37, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1); // gains: not decayed
        refStep(pd, gd, md, vd, 10, 30, 1e-3, 0.9, 0.999, 1e-8, 0.5, 1);
        refStep(pd, gd, md, vd, 30, 37, 1e-3, 0.9, 0.999, 1e-8, 0, 1);
        for (int i = 0; i < n; i++) {
            if (i < 10 || i >= 37) {
                assertEquals(p0[i], p[i], "outside the ranges: untouched");
                assertEquals(0f, m[i]);
                assertEquals(0f, v[i]);
            }
        }
        assertClose("p", pd, p, 1e-7, 1e-6);
        // zero gradient: only the decay acts on the decayed range
        float[] q = {2f}, z = {0f};
        AdamW.update(q, z, new float[1], new float[1], 0, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.5f, 1);
        assertEquals(2f * (1 - 0.1f * 0.5f), q[0], 1e-6);
    }

    @Test
    void rejectsStepZero() {
        float[] a = new float[1];
        assertThrows(IllegalArgumentException.class, () -> AdamW.update(a, a, a, a, 0, 1, 1f, 0.9f, 0.9f, 1e-8f, 0f, 0));
    }
}
