package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class GeluTest {

    static double ref(double x) {
        return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129, 1000})
    void forwardMatchesDoubleReference(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        float[] x = uniform(rnd, n + 3, 6.0);
        x[3] = 0f;
        if (n > 2) {
            x[4] = -30f;
            x[5] = 30f;
        }
        float[] y = new float[n + 1];
        Gelu.forward(x, 3, y, 1, n);
        double[] e = new double[n];
        for (int i = 0; i < n; i++) e[i] = ref(x[3 + i]);
        assertClose("gelu", e, y, 1, 1e-6, 1e-5);
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 17, 129})
    void backwardMatchesFiniteDifferences(int n) {
        SplittableRandom rnd = new SplittableRandom(300 + n);
        float[] x = uniform(rnd, n, 5.0);
        float[] dy = uniform(rnd, n, 1.0);
        float[] dx = new float[n];
        Gelu.backward(x, 0, dy, 0, dx, 0, n, false);
        double[] w = toDouble(dy);
        double[] fd = numericGradient(xs -> {
            double s = 0;
            for (int i = 0; i < xs.length; i++) s += w[i] * ref(xs[i]);
            return s;
        }, toDouble(x), 1e-5);
        assertClose("dx", fd, dx, 2e-6, 1e-4);
    }

    @Test
    void backwardAccumulatesWhenAskedAndMayAliasDy() {
        SplittableRandom rnd = new SplittableRandom(1);
        int n = 77;
        float[] x = uniform(rnd, n, 3.0), dy = uniform(rnd, n, 1.0);
        float[] fresh = new float[n], acc = uniform(rnd, n, 1.0), base = acc.clone();
        Gelu.backward(x, 0, dy, 0, fresh, 0, n, false);
        Gelu.backward(x, 0, dy, 0, acc, 0, n, true);
        for (int i = 0; i < n; i++) assertEquals(base[i] + fresh[i], acc[i], 1e-6);
        float[] inPlace = dy.clone();
        Gelu.backward(x, 0, inPlace, 0, inPlace, 0, n, false);
        assertArrayEquals(fresh, inPlace);
    }

    @Test
    void threadCountDoesNotChangeResults() {
        SplittableRandom rnd = new SplittableRandom(2);
        int n = 200_003;
        float[] x = uniform(rnd, n, 4.0), dy = uniform(rnd, n, 1.0);
        float[] y1 = new float[n], y2 = new float[n], d1 = new float[n], d2 = new float[n];
        withThreads(1, () -> {
            Gelu.forward(x, 0, y1, 0, n);
            Gelu.backward(x, 0, dy, 0, d1, 0, n, false);
        });
        withThreads(2, () -> {
            Gelu.forward(x, 0, y2, 0, n);
            Gelu.backward(x, 0, dy, 0, d2, 0, n, false);
        });
        assertArrayEquals(y1, y2);
        assertArrayEquals(d1, d2);
    }
}
