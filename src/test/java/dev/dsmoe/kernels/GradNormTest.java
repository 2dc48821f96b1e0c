package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class GradNormTest {

    static double refNorm(float[] g, int off, int n) {
        double s = 0;
        for (int i = 0; i < n; i++) s += (double) g[off + i] * g[off + i];
        return Math.sqrt(s);
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 3, 17, 129, 1_000_003})
    void normMatchesDoubleReference(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        float[] g = uniform(rnd, n + 5, 1e-3);
        double e = refNorm(g, 5, n);
        assertEquals(e, GradNorm.norm(g, 5, n), 1e-7 * e + 1e-30);
    }

    @Test
    void sumIsAccurateWhereFloatAccumulationIsNot() {
        // 4M values of 1e-4 after one value of 1: a float running sum would drop them all
        int n = 4_000_001;
        float[] g = new float[n];
        java.util.Arrays.fill(g, 1e-2f);
        g[0] = 1e3f;
        double e = 1e6 + (n - 1) * (double) 1e-2f * 1e-2f;
        assertEquals(e, GradNorm.sumOfSquares(g, 0, n), 1e-9 * e);
    }

    @Test
    void clipScalesOnlyAboveMaxNorm() {
        float[] g = {3f, 4f, 0f};
        assertEquals(5.0, GradNorm.clip(g, 0, 3, 1.0), 1e-12);
        assertEquals(3f / 5f, g[0], 1e-6);
        assertEquals(4f / 5f, g[1], 1e-6);
        assertEquals(1.0, GradNorm.norm(g, 0, 3), 1e-6);
        float[] small = {0.3f, 0.4f};
        assertEquals(0.5, GradNorm.clip(small, 0, 2, 1.0), 1e-7);
        assertArrayEquals(new float[] {0.3f, 0.4f}, small, "below the max norm: untouched");
        float[] bad = {Float.NaN, 1f};
        assertTrue(Double.isNaN(GradNorm.clip(bad, 0, 2, 1.0)));
        assertEquals(1f, bad[1], "non-finite norm: left unscaled");
        assertEquals(0.5, GradNorm.clipFactor(2.0, 1.0), 1e-6);
        assertEquals(1.0, GradNorm.clipFactor(0.5, 1.0));
    }

    @Test
    void threadCountDoesNotChangeResults() {
        SplittableRandom rnd = new SplittableRandom(1);
        int n = 777_777;
        float[] g = uniform(rnd, n, 1.0);
        double[] r = new double[2];
        withThreads(1, () -> r[0] = GradNorm.sumOfSquares(g, 0, n));
        withThreads(2, () -> r[1] = GradNorm.sumOfSquares(g, 0, n));
        assertEquals(r[0], r[1], 0.0);
        float[] a = g.clone(), b = g.clone();
        withThreads(1, () -> GradNorm.scale(a, 0, n, 0.3f));
        withThreads(2, () -> GradNorm.scale(b, 0, n, 0.3f));
        assertArrayEquals(a, b);
        assertEquals(0.3f * g[12345], a[12345]);
    }

    /**
     * The sum's rounding is pinned: part by part as {@code sumOfSquares} cuts the buffer, lane j
     * of a double vector sums the squares of elements j, j + L, j + 2L, ... (L the doubles per
     * vector) with one rounding each (fma), the lanes are added in index order and the tail
     * element by element. Training's clipping (and so bit-exact resume across versions) depends
     * on this order; the test fails if a change of the vector loop reorders it.
     */
    @ParameterizedTest
    @ValueSource(ints = {7, 8, 9, 16, 23, 24, 40, 1_000_003, 4_194_311})
    void sumFollowsTheLaneOrder(int n) {
        SplittableRandom rnd = new SplittableRandom(31L * n);
        float[] g = uniform(rnd, n + 3, 1.0);
        int lanes = jdk.incubator.vector.DoubleVector.SPECIES_PREFERRED.length();
        int parts = n < Simd.MIN_CHUNK ? 1 : GradNorm.PARTS;
        double expected = 0;
        for (int part = 0; part < parts; part++) {
            int s = (int) ((long) n * part / parts), e = (int) ((long) n * (part + 1) / parts), len = e - s;
            double[] acc = new double[lanes];
            int vec = len - len % lanes;
            for (int i = 0; i < vec; i++) {
                double x = g[3 + s + i];
                acc[i % lanes] = Math.fma(x, x, acc[i % lanes]);
            }
            double total = 0;
            if (vec > 0) for (double a : acc) total += a;
            for (int i = vec; i < len; i++) {
                double x = g[3 + s + i];
                total += x * x;
            }
            expected += total;
        }
        assertEquals(expected, GradNorm.sumOfSquares(g, 3, n), 0.0);
    }
}
