package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.*;
import static org.junit.jupiter.api.Assertions.*;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class AttentionTest {

    /** One attention problem: shapes, strides (with padding columns) and random inputs. */
    record Case(String name, int B, int T, int Hq, int Hkv, int D, int[] map) {
        int qStride() { return Hq * D + 3; }
        int kvStride() { return Hkv * D + 2; }
        int outStride() { return Hq * D + 1; }
        @Override public String toString() { return name; }
    }

    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of(new Case("gqa Hq=4 Hkv=2", 2, 5, 4, 2, 4, Attention.gqaMapping(4, 2))),
                Arguments.of(new Case("moa 4x2 heads over 2 kv", 1, 6, 8, 2, 6, Attention.moaMapping(4, 2, 2))),
                Arguments.of(new Case("moa 2x4 heads over 2 kv", 2, 4, 8, 2, 5, Attention.moaMapping(2, 4, 2))),
                Arguments.of(new Case("mha Hq=Hkv=3 D=17", 2, 4, 3, 3, 17, Attention.gqaMapping(3, 3))),
                Arguments.of(new Case("T=1", 3, 1, 4, 2, 8, Attention.gqaMapping(4, 2))),
                Arguments.of(new Case("one head", 1, 3, 1, 1, 3, new int[] {0})));
    }

    /** Double-precision reference: out [B, T, outStride] (head columns only). */
    static double[] ref(Case c, double[] q, double[] k, double[] v) {
        double[] out = new double[c.B * c.T * c.outStride()];
        double scale = 1 / Math.sqrt(c.D);
        double[] s = new double[c.T];
        for (int b = 0; b < c.B; b++) {
            for (int h = 0; h < c.Hq; h++) {
                int g = c.map[h];
                for (int i = 0; i < c.T; i++) {
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int e = 0; e < c.D; e++) {
                            dot += q[(b * c.T + i) * c.qStride() + h * c.D + e] * k[(b * c.T + j) * c.kvStride() + g * c.D + e];
                        }
                        s[j] = dot * scale;
                        max = Math.max(max, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) sum += (s[j] = Math.exp(s[j] - max));
                    for (int e = 0; e < c.D; e++) {
                        double o = 0;
                        for (int j = 0; j <= i; j++) o += s[j] / sum * v[(b * c.T + j) * c.kvStride() + g * c.D + e];
                        out[(b * c.T + i) * c.outStride() + h * c.D + e] = o;
                    }
                }
            }
        }
        return out;
    }

    static float[] run(Case c, float[] q, float[] k, float[] v, float[] att) {
        float[] out = new float[c.B * c.T * c.outStride()];
        float[] scratch = new float[(int) Attention.forwardScratchSize(c.B, c.T, c.Hkv, c.D)];
        Attention.forward(q, 0, c.qStride(), k, 0, v, 0, c.kvStride(), att, 0, out, 0, c.outStride(),
                scratch, 0, c.B, c.T, c.Hq, c.Hkv, c.D, c.map);
        return out;
    }

    static float[] newAtt(Case c) {
        return new float[(int) Attention.attSize(c.B, c.Hq, c.T)];
    }

    @ParameterizedTest
    @MethodSource("cases")
    void forwardMatchesDoubleReference(Case c) {
        SplittableRandom rnd = new SplittableRandom(c.name.hashCode());
        float[] q = uniform(rnd, c.B * c.T * c.qStride(), 2.0);
        float[] k = uniform(rnd, c.B * c.T * c.kvStride(), 2.0);
        float[] v = uniform(rnd, c.B * c.T * c.kvStride(), 1.0);
        float[] out = run(c, q, k, v, newAtt(c));
        assertClose("out", ref(c, toDouble(q), toDouble(k), toDouble(v)), out, 1e-6, 1e-5);
    }

    static Stream<Arguments> largeCases() {
        return Stream.of(
                Arguments.of(new Case("dsmoe-small-like T=70 D=32", 2, 70, 8, 2, 32, Attention.moaMapping(4, 2, 2))),
                Arguments.of(new Case("gqa T=67 D=17", 1, 67, 4, 2, 17, Attention.gqaMapping(4, 2))),
                Arguments.of(new Case("mha T=129 D=64", 1, 129, 2, 2, 64, Attention.gqaMapping(2, 2))));
    }

    @ParameterizedTest
    @MethodSource("largeCases")
    void forwardAndBackwardMatchDoubleReferenceAtModelShapes(Case c) {
        SplittableRandom rnd = new SplittableRandom(77 + c.T);
        float[] q = uniform(rnd, c.B * c.T * c.qStride(), 1.5);
        float[] k = uniform(rnd, c.B * c.T * c.kvStride(), 1.5);
        float[] v = uniform(rnd, c.B * c.T * c.kvStride(), 1.0);
        float[] w = uniform(rnd, c.B * c.T * c.outStride(), 1.0);
        float[] att = newAtt(c);
        float[] out = run(c, q, k, v, att);
        double[] qd = toDouble(q), kd = toDouble(k), vd = toDouble(v);
        assertClose("out", ref(c, qd, kd, vd), out, 1e-6, 1e-5);
        for (int r = 0; r < c.B * c.Hq * c.T; r++) {
            int i = r % c.T;
            double sum = 0;
            for (int j = 0; j < c.T; j++) {
                if (j > i) assertEquals(0f, att[r * c.T + j], "att above the diagonal is zero");
                sum += att[r * c.T + j];
            }
            assertEquals(1.0, sum, 1e-5, "att row sums to 1");
        }
        float[] dq = filled(q.length, 9f), dk = filled(k.length, 9f), dv = filled(v.length, 9f);
        float[] scratch = new float[(int) Attention.backwardScratchSize(c.B, c.T, c.Hkv, c.D)];
        Attention.backward(w, 0, c.outStride(), q, 0, c.qStride(), k, 0, v, 0, c.kvStride(), att, 0,
                dq, 0, dk, 0, dv, 0, scratch, 0, c.B, c.T, c.Hq, c.Hkv, c.D, c.map);
        double[][] g = refBackward(c, qd, kd, vd, toDouble(w));
        assertHeadColumns("dq", g[0], dq, c.qStride(), c.Hq * c.D);
        assertHeadColumns("dk", g[1], dk, c.kvStride(), c.Hkv * c.D);
        assertHeadColumns("dv", g[2], dv, c.kvStride(), c.Hkv * c.D);
    }

    /** Analytic backward in double: {dq, dk, dv} for upstream gradient dout. */
    static double[][] refBackward(Case c, double[] q, double[] k, double[] v, double[] dout) {
        double[] dq = new double[q.length], dk = new double[k.length], dv = new double[v.length];
        double scale = 1 / Math.sqrt(c.D);
        double[] p = new double[c.T], dp = new double[c.T];
        for (int b = 0; b < c.B; b++) {
            for (int h = 0; h < c.Hq; h++) {
                int g = c.map[h];
                for (int i = 0; i < c.T; i++) {
                    int qi = (b * c.T + i) * c.qStride() + h * c.D, oi = (b * c.T + i) * c.outStride() + h * c.D;
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double s = 0;
                        for (int e = 0; e < c.D; e++) s += q[qi + e] * k[(b * c.T + j) * c.kvStride() + g * c.D + e];
                        p[j] = s * scale;
                        max = Math.max(max, p[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) sum += (p[j] = Math.exp(p[j] - max));
                    double pdp = 0;
                    for (int j = 0; j <= i; j++) {
                        p[j] /= sum;
                        double s = 0;
                        for (int e = 0; e < c.D; e++) s += dout[oi + e] * v[(b * c.T + j) * c.kvStride() + g * c.D + e];
                        dp[j] = s;
                        pdp += p[j] * s;
                    }
                    for (int j = 0; j <= i; j++) {
                        double ds = p[j] * (dp[j] - pdp) * scale;
                        int kj = (b * c.T + j) * c.kvStride() + g * c.D;
                        for (int e = 0; e < c.D; e++) {
                            dq[qi + e] += ds * k[kj + e];
                            dk[kj + e] += ds * q[qi + e];
                            dv[kj + e] += p[j] * dout[oi + e];
                        }
                    }
                }
            }
        }
        return new double[][] {dq, dk, dv};
    }

    @ParameterizedTest
    @MethodSource("cases")
    void backwardMatchesFiniteDifferences(Case c) {
        SplittableRandom rnd = new SplittableRandom(c.name.hashCode() + 1);
        float[] q = uniform(rnd, c.B * c.T * c.qStride(), 1.5);
        float[] k = uniform(rnd, c.B * c.T * c.kvStride(), 1.5);
        float[] v = uniform(rnd, c.B * c.T * c.kvStride(), 1.0);
        float[] w = uniform(rnd, c.B * c.T * c.outStride(), 1.0);
        float[] att = newAtt(c);
        run(c, q, k, v, att);
        // gradients start as garbage: the backward must overwrite the head columns
        float[] dq = filled(q.length, 9f), dk = filled(k.length, 9f), dv = filled(v.length, 9f);
        float[] scratch = new float[(int) Attention.backwardScratchSize(c.B, c.T, c.Hkv, c.D)];
        Attention.backward(w, 0, c.outStride(), q, 0, c.qStride(), k, 0, v, 0, c.kvStride(), att, 0,
                dq, 0, dk, 0, dv, 0, scratch, 0, c.B, c.T, c.Hq, c.Hkv, c.D, c.map);
        double[] wd = toDouble(w), qd = toDouble(q), kd = toDouble(k), vd = toDouble(v);
        double[] fq = numericGradient(x -> dot(ref(c, x, kd, vd), wd), qd.clone(), 1e-5);
        double[] fk = numericGradient(x -> dot(ref(c, qd, x, vd), wd), kd.clone(), 1e-5);
        double[] fv = numericGradient(x -> dot(ref(c, qd, kd, x), wd), vd.clone(), 1e-5);
        assertHeadColumns("dq", fq, dq, c.qStride(), c.Hq * c.D);
        assertHeadColumns("dk", fk, dk, c.kvStride(), c.Hkv * c.D);
        assertHeadColumns("dv", fv, dv, c.kvStride(), c.Hkv * c.D);
        // the analytic double reference used at larger shapes agrees with finite differences too
        double[][] g = refBackward(c, qd, kd, vd, wd);
        double[][] fds = {fq, fk, fv};
        for (int t = 0; t < 3; t++) {
            for (int i = 0; i < g[t].length; i++) assertEquals(fds[t][i], g[t][i], 1e-7, "analytic reference " + t + " at " + i);
        }
    }

    static void assertHeadColumns(String what, double[] expected, float[] actual, int stride, int width) {
        for (int i = 0; i < expected.length; i++) {
            if (i % stride >= width) {
                assertEquals(9f, actual[i], what + ": padding column " + i + " must be left untouched");
                continue;
            }
            double e = expected[i];
            assertEquals(e, actual[i], 1e-5 + 1e-4 * Math.abs(e), what + " element " + i);
        }
    }

    static float[] filled(int n, float value) {
        float[] a = new float[n];
        Arrays.fill(a, value);
        return a;
    }

    static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    @Test
    void changingAFutureTokenDoesNotChangeEarlierOutputs() {
        Case c = new Case("causal", 2, 9, 4, 2, 8, Attention.gqaMapping(4, 2));
        SplittableRandom rnd = new SplittableRandom(3);
        float[] q = uniform(rnd, c.B * c.T * c.qStride(), 2.0);
        float[] k = uniform(rnd, c.B * c.T * c.kvStride(), 2.0);
        float[] v = uniform(rnd, c.B * c.T * c.kvStride(), 1.0);
        float[] before = run(c, q, k, v, newAtt(c));
        int t0 = 5;
        for (int b = 0; b < c.B; b++) {
            for (int e = 0; e < c.kvStride(); e++) {
                k[(b * c.T + t0) * c.kvStride() + e] += 3f;
                v[(b * c.T + t0) * c.kvStride() + e] -= 5f;
            }
            for (int e = 0; e < c.qStride(); e++) q[(b * c.T + t0) * c.qStride() + e] *= -2f;
        }
        float[] after = run(c, q, k, v, newAtt(c));
        for (int b = 0; b < c.B; b++) {
            for (int t = 0; t < c.T; t++) {
                int row = (b * c.T + t) * c.outStride();
                float[] x = Arrays.copyOfRange(before, row, row + c.outStride());
                float[] y = Arrays.copyOfRange(after, row, row + c.outStride());
                if (t < t0) assertArrayEquals(x, y, "position " + t + " must not see position " + t0);
                else assertFalse(Arrays.equals(x, y), "position " + t + " does see position " + t0);
            }
        }
    }

    @Test
    void singlePositionAttendsOnlyToItself() {
        Case c = new Case("T=1", 2, 1, 4, 2, 8, Attention.gqaMapping(4, 2));
        SplittableRandom rnd = new SplittableRandom(4);
        float[] q = uniform(rnd, c.B * c.qStride(), 2.0);
        float[] k = uniform(rnd, c.B * c.kvStride(), 2.0);
        float[] v = uniform(rnd, c.B * c.kvStride(), 1.0);
        float[] att = newAtt(c);
        float[] out = run(c, q, k, v, att);
        for (float p : att) assertEquals(1f, p);
        for (int b = 0; b < c.B; b++) {
            for (int h = 0; h < c.Hq; h++) {
                for (int e = 0; e < c.D; e++) {
                    assertEquals(v[b * c.kvStride() + c.map[h] * c.D + e], out[b * c.outStride() + h * c.D + e]);
                }
            }
        }
    }

    @Test
    void threadCountDoesNotChangeResults() {
        Case c = new Case("threads", 3, 17, 8, 2, 16, Attention.moaMapping(4, 2, 2));
        SplittableRandom rnd = new SplittableRandom(5);
        float[] q = uniform(rnd, c.B * c.T * c.qStride(), 1.0);
        float[] k = uniform(rnd, c.B * c.T * c.kvStride(), 1.0);
        float[] v = uniform(rnd, c.B * c.T * c.kvStride(), 1.0);
        float[] w = uniform(rnd, c.B * c.T * c.outStride(), 1.0);
        float[][] results = new float[2][];
        for (int n = 1; n <= 2; n++) {
            float[] att = newAtt(c);
            float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
            float[] scratch = new float[(int) Attention.backwardScratchSize(c.B, c.T, c.Hkv, c.D)];
            float[][] out = new float[1][];
            withThreads(n, () -> {
                out[0] = run(c, q, k, v, att);
                Attention.backward(w, 0, c.outStride(), q, 0, c.qStride(), k, 0, v, 0, c.kvStride(), att, 0,
                        dq, 0, dk, 0, dv, 0, scratch, 0, c.B, c.T, c.Hq, c.Hkv, c.D, c.map);
            });
            float[] all = new float[out[0].length + dq.length + dk.length + dv.length];
            int p = 0;
            for (float[] a : new float[][] {out[0], dq, dk, dv}) {
                System.arraycopy(a, 0, all, p, a.length);
                p += a.length;
            }
            results[n - 1] = all;
        }
        assertArrayEquals(results[0], results[1]);
    }

    @Test
    void mappingsAndValidation() {
        assertArrayEquals(new int[] {0, 0, 1, 1}, Attention.gqaMapping(4, 2));
        assertArrayEquals(new int[] {0, 1, 0, 1, 0, 1, 0, 1}, Attention.moaMapping(4, 2, 2));
        assertArrayEquals(new int[] {0, 0, 1, 1, 0, 0, 1, 1}, Attention.moaMapping(2, 4, 2));
        float[] a = new float[64];
        assertThrows(IllegalArgumentException.class, () -> Attention.forward(a, 0, 4, a, 0, a, 0, 4, a, 0, a, 0, 4,
                a, 0, 1, 2, 1, 1, 4, new int[] {1}));
    }
}
