package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class RmsNormTest {

    static final float EPS = 1e-5f;

    static double[] ref(double[] x, double[] g, int T, int d, double eps) {
        double[] y = new double[T * d];
        for (int t = 0; t < T; t++) {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += x[t * d + i] * x[t * d + i];
            double r = 1 / Math.sqrt(ss / d + eps);
            for (int i = 0; i < d; i++) y[t * d + i] = x[t * d + i] * r * g[i];
        }
        return y;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129, 256})
    void forwardMatchesDoubleReference(int d) {
        SplittableRandom rnd = new SplittableRandom(d);
        int T = 6;
        float[] x = uniform(rnd, T * d + 4, 2.0);
        float[] g = uniform(rnd, d + 1, 1.5);
        float[] y = new float[T * d + 2];
        float[] rstd = new float[T + 3];
        RmsNorm.forward(x, 4, g, 1, y, 2, rstd, 3, T, d, EPS);
        double[] xd = new double[T * d], gd = new double[d];
        for (int i = 0; i < xd.length; i++) xd[i] = x[4 + i];
        for (int i = 0; i < d; i++) gd[i] = g[1 + i];
        assertClose("y", ref(xd, gd, T, d, EPS), y, 2, 1e-6, 1e-5);
        for (int t = 0; t < T; t++) {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += xd[t * d + i] * xd[t * d + i];
            assertEquals(1 / Math.sqrt(ss / d + EPS), rstd[3 + t], 1e-5 / Math.sqrt(ss / d + EPS), "rstd " + t);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129})
    void backwardMatchesFiniteDifferences(int d) {
        SplittableRandom rnd = new SplittableRandom(200 + d);
        int T = 4;
        float[] x = uniform(rnd, T * d, 2.0);
        float[] g = uniform(rnd, d, 1.5);
        float[] w = uniform(rnd, T * d, 1.0);
        float[] y = new float[T * d], rstd = new float[T], dx = new float[T * d];
        float[] dg = uniform(rnd, d, 1.0);
        float[] dg0 = dg.clone();
        RmsNorm.forward(x, 0, g, 0, y, 0, rstd, 0, T, d, EPS);
        RmsNorm.backward(x, 0, g, 0, rstd, 0, w, 0, dx, 0, dg, 0, T, d, false);
        double[] wd = toDouble(w), gd = toDouble(g), xd = toDouble(x);
        double[] fdx = numericGradient(xs -> dotW(ref(xs, gd, T, d, EPS), wd), xd.clone(), 1e-5);
        double[] fdg = numericGradient(gs -> dotW(ref(xd, gs, T, d, EPS), wd), gd.clone(), 1e-5);
        assertClose("dx", fdx, dx, 1e-5, 1e-4);
        float[] dgDelta = new float[d];
        for (int i = 0; i < d; i++) dgDelta[i] = dg[i] - dg0[i];
        assertClose("dg (accumulated)", fdg, dgDelta, 1e-5, 1e-4);
    }

    static double dotW(double[] y, double[] w) {
        double s = 0;
        for (int i = 0; i < y.length; i++) s += y[i] * w[i];
        return s;
    }

    @Test
    void backwardAccumulatesDxWhenAsked() {
        SplittableRandom rnd = new SplittableRandom(4);
        int T = 3, d = 33;
        float[] x = uniform(rnd, T * d, 1.0), g = uniform(rnd, d, 1.0), dy = uniform(rnd, T * d, 1.0);
        float[] y = new float[T * d], rstd = new float[T];
        RmsNorm.forward(x, 0, g, 0, y, 0, rstd, 0, T, d, EPS);
        float[] fresh = new float[T * d], acc = uniform(rnd, T * d, 1.0), base = acc.clone();
        RmsNorm.backward(x, 0, g, 0, rstd, 0, dy, 0, fresh, 0, new float[d], 0, T, d, false);
        RmsNorm.backward(x, 0, g, 0, rstd, 0, dy, 0, acc, 0, new float[d], 0, T, d, true);
        for (int i = 0; i < acc.length; i++) assertEquals(base[i] + fresh[i], acc[i], 1e-6);
    }

    @Test
    void threadCountDoesNotChangeResults() {
        SplittableRandom rnd = new SplittableRandom(8);
        int T = 600, d = 129;
        float[] x = uniform(rnd, T * d, 1.0), g = uniform(rnd, d, 1.0), dy = uniform(rnd, T * d, 1.0);
        float[][] out = new float[2][];
        for (int k = 0; k < 2; k++) {
            float[] y = new float[T * d], rstd = new float[T], dx = new float[T * d], dg = new float[d];
            withThreads(k + 1, () -> {
                RmsNorm.forward(x, 0, g, 0, y, 0, rstd, 0, T, d, EPS);
                RmsNorm.backward(x, 0, g, 0, rstd, 0, dy, 0, dx, 0, dg, 0, T, d, false);
            });
            float[] all = new float[2 * T * d + d];
            System.arraycopy(y, 0, all, 0, T * d);
            System.arraycopy(dx, 0, all, T * d, T * d);
            System.arraycopy(dg, 0, all, 2 * T * d, d);
            out[k] = all;
        }
        assertArrayEquals(out[0], out[1]);
    }
}
