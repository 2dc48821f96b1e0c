package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class SoftmaxTest {

    static double[] refSoftmax(double[] x, int rows, int n, boolean log) {
        double[] y = new double[rows * n];
        for (int r = 0; r < rows; r++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int i = 0; i < n; i++) max = Math.max(max, x[r * n + i]);
            double s = 0;
            for (int i = 0; i < n; i++) s += Math.exp(x[r * n + i] - max);
            for (int i = 0; i < n; i++) {
                double z = x[r * n + i] - max;
                y[r * n + i] = log ? z - Math.log(s) : Math.exp(z) / s;
            }
        }
        return y;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 16, 17, 129, 1000})
    void forwardMatchesDoubleReference(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        int rows = 5;
        float[] x = uniform(rnd, rows * n + 7, 8.0);
        float[] y = new float[rows * n + 3];
        Softmax.forward(x, 7, y, 3, rows, n);
        double[] xd = new double[rows * n];
        for (int i = 0; i < xd.length; i++) xd[i] = x[7 + i];
        assertClose("softmax", refSoftmax(xd, rows, n, false), y, 3, 1e-7, 2e-6);
        Softmax.logForward(x, 7, y, 3, rows, n);
        assertClose("log-softmax", refSoftmax(xd, rows, n, true), y, 3, 2e-6, 2e-6);
    }

    @Test
    void largeLogitsStayFiniteAndInPlaceWorks() {
        float[] x = {1e4f, -1e4f, 1e4f - 1f, 3e38f, 3e38f, -3e38f};
        float[] y = x.clone();
        Softmax.forward(y, 0, y, 0, 2, 3);
        double e1 = Math.exp(-1);
        assertClose("softmax", new double[] {1 / (1 + e1), 0, e1 / (1 + e1), 0.5, 0.5, 0}, y, 1e-6, 1e-6);
        float[] z = x.clone();
        Softmax.logForward(z, 0, z, 0, 2, 3);
        for (float v : z) assertFalse(Float.isNaN(v));
        assertEquals(-Math.log(1 + e1), z[0], 1e-6);
        assertEquals(-2e4 - Math.log(1 + e1), z[1], 2e-3); // float spacing at 2e4 is 2e-3
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129})
    void backwardMatchesFiniteDifferences(int n) {
        SplittableRandom rnd = new SplittableRandom(100 + n);
        int rows = 3;
        float[] x = uniform(rnd, rows * n, 3.0);
        float[] w = uniform(rnd, rows * n, 1.0);
        float[] y = new float[rows * n];
        float[] dx = new float[rows * n];
        double[] wd = toDouble(w);
        for (boolean log : new boolean[] {false, true}) {
            if (log) {
                Softmax.logForward(x, 0, y, 0, rows, n);
                Softmax.logBackward(y, 0, w, 0, dx, 0, rows, n, false);
            } else {
                Softmax.forward(x, 0, y, 0, rows, n);
                Softmax.backward(y, 0, w, 0, dx, 0, rows, n, false);
            }
            double[] fd = numericGradient(xs -> {
                double[] ys = refSoftmax(xs, rows, n, log);
                double s = 0;
                for (int i = 0; i < ys.length; i++) s += wd[i] * ys[i];
                return s;
            }, toDouble(x), 1e-5);
            assertClose(log ? "log-softmax dx" : "softmax dx", fd, dx, 2e-6, 1e-4);
        }
    }

    @Test
    void backwardAccumulatesWhenAsked() {
        SplittableRandom rnd = new SplittableRandom(7);
        int rows = 4, n = 37;
        float[] x = uniform(rnd, rows * n, 2.0), dy = uniform(rnd, rows * n, 1.0), y = new float[rows * n];
        Softmax.forward(x, 0, y, 0, rows, n);
        for (boolean log : new boolean[] {false, true}) {
            float[] fresh = new float[rows * n];
            float[] acc = uniform(rnd, rows * n, 1.0);
            float[] base = acc.clone();
            if (log) {
                Softmax.logBackward(y, 0, dy, 0, fresh, 0, rows, n, false);
                Softmax.logBackward(y, 0, dy, 0, acc, 0, rows, n, true);
            } else {
                Softmax.backward(y, 0, dy, 0, fresh, 0, rows, n, false);
                Softmax.backward(y, 0, dy, 0, acc, 0, rows, n, true);
            }
            for (int i = 0; i < acc.length; i++) assertEquals(base[i] + fresh[i], acc[i], 1e-6);
        }
    }

    @Test
    void threadCountDoesNotChangeResults() {
        SplittableRandom rnd = new SplittableRandom(3);
        int rows = 700, n = 129;
        float[] x = uniform(rnd, rows * n, 5.0), dy = uniform(rnd, rows * n, 1.0);
        float[] y1 = new float[rows * n], y2 = new float[rows * n], d1 = new float[rows * n], d2 = new float[rows * n];
        withThreads(1, () -> {
            Softmax.forward(x, 0, y1, 0, rows, n);
            Softmax.backward(y1, 0, dy, 0, d1, 0, rows, n, false);
        });
        withThreads(2, () -> {
            Softmax.forward(x, 0, y2, 0, rows, n);
            Softmax.backward(y2, 0, dy, 0, d2, 0, rows, n, false);
        });
        assertArrayEquals(y1, y2);
        assertArrayEquals(d1, d2);
    }
}
