package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class CrossEntropyTest {

    /** Per-token losses in double; NaN marks ignored tokens. */
    static double[] refLosses(double[] x, int[] targets, int T, int V) {
        double[] l = new double[T];
        for (int t = 0; t < T; t++) {
            if (targets[t] == CrossEntropy.IGNORE) {
                l[t] = Double.NaN;
                continue;
            }
            double max = Double.NEGATIVE_INFINITY;
            for (int i = 0; i < V; i++) max = Math.max(max, x[t * V + i]);
            double s = 0;
            for (int i = 0; i < V; i++) s += Math.exp(x[t * V + i] - max);
            l[t] = max + Math.log(s) - x[t * V + targets[t]];
        }
        return l;
    }

    static double refMean(double[] x, int[] targets, int T, int V) {
        double[] l = refLosses(x, targets, T, V);
        double s = 0;
        int c = 0;
        for (double v : l) {
            if (!Double.isNaN(v)) {
                s += v;
                c++;
            }
        }
        return c == 0 ? 0 : s / c;
    }

    static int[] targets(SplittableRandom rnd, int T, int V, double ignoreFraction) {
        int[] t = new int[T];
        for (int i = 0; i < T; i++) t[i] = rnd.nextDouble() < ignoreFraction ? CrossEntropy.IGNORE : rnd.nextInt(V);
        return t;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129, 1000})
    void forwardMatchesDoubleReference(int V) {
        SplittableRandom rnd = new SplittableRandom(V);
        int T = 9;
        float[] logits = uniform(rnd, T * V, 6.0);
        int[] tg = targets(rnd, T, V, 0.3);
        tg[0] = V - 1;
        float[] losses = new float[T];
        float mean = CrossEntropy.forward(logits, 0, tg, 0, T, V, CrossEntropy.IGNORE, losses, 0);
        double[] ref = refLosses(toDouble(logits), tg, T, V);
        for (int t = 0; t < T; t++) {
            double e = Double.isNaN(ref[t]) ? 0 : ref[t];
            assertEquals(e, losses[t], 1e-5 + 1e-5 * Math.abs(e), "loss of token " + t);
        }
        double m = refMean(toDouble(logits), tg, T, V);
        assertEquals(m, mean, 1e-5 + 1e-5 * m);
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129})
    void gradientMatchesFiniteDifferences(int V) {
        SplittableRandom rnd = new SplittableRandom(50 + V);
        int T = 5;
        float[] logits = uniform(rnd, T * V, 3.0);
        int[] tg = targets(rnd, T, V, 0.25);
        tg[1] = CrossEntropy.IGNORE;
        tg[2] = 0;
        float dloss = 0.7f;
        float[] d = new float[T * V];
        float[] losses = new float[T];
        CrossEntropy.forwardBackward(logits, 0, tg, 0, T, V, CrossEntropy.IGNORE, dloss, d, 0, losses, 0);
        double[] fd = numericGradient(x -> dloss * refMean(x, tg, T, V), toDouble(logits), 1e-5);
        assertClose("dlogits", fd, d, 1e-6, 1e-4);
        for (int i = 0; i < V; i++) assertEquals(0f, d[V + i], "ignored row has zero gradient");
    }

    @Test
    void inPlaceGradientMatchesSeparateBuffer() {
        SplittableRandom rnd = new SplittableRandom(11);
        int T = 7, V = 77;
        float[] logits = uniform(rnd, T * V + 5, 4.0);
        int[] tg = targets(rnd, T, V, 0.2);
        float[] d = new float[T * V + 2];
        float[] losses = new float[T], losses2 = new float[T];
        float m1 = CrossEntropy.forwardBackward(logits, 5, tg, 0, T, V, -1, 1f, d, 2, losses, 0);
        float m2 = CrossEntropy.forwardBackward(logits, 5, tg, 0, T, V, -1, 1f, logits, 5, losses2, 0);
        assertEquals(m1, m2);
        assertArrayEquals(losses, losses2);
        for (int i = 0; i < T * V; i++) assertEquals(d[2 + i], logits[5 + i], "element " + i);
    }

    @Test
    void veryLargeLogitsStayFinite() {
        int T = 3, V = 40;
        float[] logits = new float[T * V];
        SplittableRandom rnd = new SplittableRandom(5);
        for (int i = 0; i < logits.length; i++) logits[i] = (float) (rnd.nextDouble() * 2e4 - 1e4);
        logits[7] = 1e4f; // row 0: target 7 is the max
        logits[V + 3] = -1e4f; // row 1: target 3 is tiny, loss ~ 2e4
        logits[2 * V + 11] = 3e38f; // row 2: near float max
        int[] tg = {7, 3, 12};
        float[] d = new float[T * V];
        float[] losses = new float[T];
        float mean = CrossEntropy.forwardBackward(logits, 0, tg, 0, T, V, -1, 1f, d, 0, losses, 0);
        assertTrue(Float.isFinite(mean), "mean loss finite");
        for (float v : d) assertTrue(Float.isFinite(v), "gradient finite");
        double[] ref = refLosses(toDouble(logits), tg, T, V);
        for (int t = 0; t < T; t++) assertEquals(ref[t], losses[t], 1e-6 * Math.abs(ref[t]) + 1e-3, "token " + t);
        assertEquals(-1f / 3, d[2 * V + 12], 1e-6, "target far below the max: gradient -1/count");
        assertEquals(1f / 3, d[2 * V + 11], 1e-6, "the max takes all the probability");
    }

    @Test
    void ignoredTargetsAreNotCounted() {
        int T = 4, V = 5;
        float[] logits = new float[T * V]; // uniform softmax: loss log(5) per token
        int[] tg = {1, -1, -1, 4};
        float[] d = new float[T * V];
        float[] losses = new float[T];
        float mean = CrossEntropy.forwardBackward(logits, 0, tg, 0, T, V, -1, 2f, d, 0, losses, 0);
        assertEquals(Math.log(5), mean, 1e-6);
        assertEquals(0f, losses[1]);
        assertEquals(0f, losses[2]);
        assertEquals(2, CrossEntropy.count(tg, 0, T, -1));
        assertEquals(2f / 2 * (0.2f - 1f), d[1], 1e-6, "scale = dloss / count");
        assertEquals(2f / 2 * 0.2f, d[0], 1e-6);
        int[] none = {-1, -1, -1, -1};
        assertEquals(0f, CrossEntropy.forwardBackward(logits, 0, none, 0, T, V, -1, 1f, d, 0, losses, 0));
        for (float v : d) assertEquals(0f, v);
    }

    @Test
    void rejectsTargetOutsideVocabulary() {
        float[] logits = new float[6];
        assertThrows(IllegalArgumentException.class,
                () -> CrossEntropy.forward(logits, 0, new int[] {0, 3}, 0, 2, 3, -1, new float[2], 0));
    }

    @Test
    void threadCountDoesNotChangeResults() {
        SplittableRandom rnd = new SplittableRandom(9);
        int T = 64, V = 3000;
        float[] logits = uniform(rnd, T * V, 5.0);
        int[] tg = targets(rnd, T, V, 0.1);
        float[] d1 = new float[T * V], d2 = new float[T * V], l1 = new float[T], l2 = new float[T];
        float[] m = new float[2];
        withThreads(1, () -> m[0] = CrossEntropy.forwardBackward(logits, 0, tg, 0, T, V, -1, 1f, d1, 0, l1, 0));
        withThreads(2, () -> m[1] = CrossEntropy.forwardBackward(logits, 0, tg, 0, T, V, -1, 1f, d2, 0, l2, 0));
        assertEquals(m[0], m[1]);
        assertArrayEquals(d1, d2);
    }
}
