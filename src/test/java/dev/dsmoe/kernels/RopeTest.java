package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class RopeTest {

    /** Rotate-half RoPE in double over a [B, T, rowStride] block, heads [0, H) of size D. */
    static double[] ref(double[] x, int off, int stride, int B, int T, int H, int D, int start, double theta) {
        double[] y = x.clone();
        int half = D / 2;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                for (int h = 0; h < H; h++) {
                    int o = off + (b * T + t) * stride + h * D;
                    for (int i = 0; i < half; i++) {
                        double a = (start + t) / Math.pow(theta, 2.0 * i / D);
                        double x1 = x[o + i], x2 = x[o + half + i];
                        y[o + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
                        y[o + half + i] = x2 * Math.cos(a) + x1 * Math.sin(a);
                    }
                }
            }
        }
        return y;
    }

    @ParameterizedTest
    @CsvSource({"2,1,1,1,0", "6,2,3,2,5", "34,1,17,3,0", "64,2,5,2,100", "258,1,3,1,7", "32,3,129,2,0"})
    void forwardMatchesDoubleReference(int D, int B, int T, int H, int start) {
        SplittableRandom rnd = new SplittableRandom(D * 31 + T);
        int stride = H * D + 5, off = 3;
        float[] x = uniform(rnd, off + B * T * stride, 2.0);
        double theta = D == 64 ? 500000.0 : Rope.DEFAULT_THETA;
        Rope rope = new Rope(D, start + T + 4, theta);
        double[] e = ref(toDouble(x), off, stride, B, T, H, D, start, theta);
        rope.forward(x, off, stride, B, T, H, start);
        // angles up to ~130 rad: float tables are exact to ~1e-5 there
        assertClose("rope", e, x, 2e-5, 1e-5);
    }

    @Test
    void backwardIsTheTransposeOfForward() {
        // RoPE is linear, so d(sum(w * R x))/dx = R^T w: check <R x, w> = <x, R^T w> and R^T R = I.
        SplittableRandom rnd = new SplittableRandom(12);
        int D = 18, B = 2, T = 7, H = 3, stride = H * D + 2, start = 4;
        Rope rope = new Rope(D, 32);
        float[] x = uniform(rnd, B * T * stride, 1.0), w = uniform(rnd, B * T * stride, 1.0);
        float[] rx = x.clone(), rtw = w.clone();
        rope.forward(rx, 0, stride, B, T, H, start);
        rope.backward(rtw, 0, stride, B, T, H, start);
        double a = 0, b = 0;
        for (int i = 0; i < x.length; i++) {
            a += (double) rx[i] * w[i];
            b += (double) x[i] * rtw[i];
        }
        assertEquals(a, b, 1e-5 * (Math.abs(a) + 1));
        // and against finite differences of the double reference
        double[] wd = toDouble(w);
        double[] fd = numericGradient(xs -> {
            double[] y = ref(xs, 0, stride, B, T, H, D, start, Rope.DEFAULT_THETA);
            double s = 0;
            for (int i = 0; i < y.length; i++) s += wd[i] * y[i];
            return s;
        }, toDouble(x), 1e-5);
        // padding columns of each row are untouched by both forward and backward: gradient = w
        assertClose("R^T w", fd, rtw, 1e-6, 1e-5);
        float[] back = rx.clone();
        rope.backward(back, 0, stride, B, T, H, start);
        assertClose("R^T R x = x", toDouble(x), back, 1e-6, 1e-5);
    }

    @Test
    void positionZeroIsIdentityAndPositionsOutsideTableFail() {
        Rope rope = new Rope(8, 4);
        float[] x = uniform(new SplittableRandom(1), 8, 1.0), y = x.clone();
        rope.forward(y, 0, 8, 1, 1, 1, 0);
        assertArrayEquals(x, y);
        assertThrows(IllegalArgumentException.class, () -> rope.forward(y, 0, 8, 1, 1, 1, 4));
        assertThrows(IllegalArgumentException.class, () -> new Rope(7, 4));
    }

    /** maxPositions x D/2 past an int is refused by name, not wrapped (2^30 x 4 wrapped to empty tables). */
    @Test
    void tablesPastAJavaArrayAreRefusedNotWrapped() {
        for (int[] s : new int[][] {{8, 1 << 30}, {8, 2_000_000_000}, {1 << 16, 1 << 16}}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Rope(s[0], s[1]));
            assertTrue(e.getMessage().contains("more than a Java array holds") && e.getMessage().contains("max_position_embeddings"),
                    e.getMessage());
        }
        assertEquals(2L * 2_000_000_000 * 4, Rope.tableFloats(8, 2_000_000_000));
    }
}
