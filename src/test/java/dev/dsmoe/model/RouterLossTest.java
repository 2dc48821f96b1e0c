package dev.dsmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class RouterLossTest {

    /** MI loss written directly from the router logits, in double: the reference. */
    private static double miFromLogits(double[] z, int n, int e) {
        double[][] s = new double[n][e];
        for (int t = 0; t < n; t++) {
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            for (int i = 0; i < e; i++) max = Math.max(max, z[t * e + i]);
            for (int i = 0; i < e; i++) sum += Math.exp(z[t * e + i] - max);
            for (int i = 0; i < e; i++) s[t][i] = Math.exp(z[t * e + i] - max) / sum;
        }
        double hx = 0;
        double[] p = new double[e];
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < e; i++) {
                hx += -s[t][i] * Math.log(s[t][i]) / n;
                p[i] += s[t][i] / n;
            }
        }
        double he = 0;
        for (int i = 0; i < e; i++) he -= p[i] * Math.log(p[i] + 1e-8);
        return -he + hx;
    }

    private static void softmax(double[] z, float[] s, float[] logS, int n, int e) {
        for (int t = 0; t < n; t++) {
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            for (int i = 0; i < e; i++) max = Math.max(max, z[t * e + i]);
            for (int i = 0; i < e; i++) sum += Math.exp(z[t * e + i] - max);
            for (int i = 0; i < e; i++) {
                logS[t * e + i] = (float) (z[t * e + i] - max - Math.log(sum));
                s[t * e + i] = (float) Math.exp(logS[t * e + i]);
            }
        }
    }

    @Test
    void miLossAndGradientMatchADirectComputation() {
        for (int[] shape : new int[][] {{1, 2}, {7, 3}, {33, 16}, {5, 1}}) {
            int n = shape[0], e = shape[1];
            SplittableRandom r = new SplittableRandom(n * 31 + e);
            double[] z = new double[n * e];
            for (int i = 0; i < z.length; i++) z[i] = r.nextGaussian() * 2;
            float[] s = new float[n * e], logS = new float[n * e];
            softmax(z, s, logS, n, e);
            double[] pBar = new double[e];
            RouterLoss.Entropies h = RouterLoss.entropies(s, logS, n, e, pBar);
            assertEquals(miFromLogits(z, n, e), h.mi(), 1e-5, "loss n=" + n + " e=" + e);

            // Gradient w.r.t. logits: dS from miBackward, then the softmax backward.
            float[] dS = new float[n * e];
            RouterLoss.miBackward(logS, pBar, n, e, 1.0, dS);
            for (int t = 0; t < n; t++) {
                double dot = 0;
                for (int i = 0; i < e; i++) dot += (double) s[t * e + i] * dS[t * e + i];
                for (int i = 0; i < e; i++) {
                    double analytic = s[t * e + i] * (dS[t * e + i] - dot);
                    int k = t * e + i;
                    double h0 = 1e-5, keep = z[k];
                    z[k] = keep + h0;
                    double up = miFromLogits(z, n, e);
                    z[k] = keep - h0;
                    double down = miFromLogits(z, n, e);
                    z[k] = keep;
                    double numeric = (up - down) / (2 * h0);
                    assertEquals(numeric, analytic, 2e-5 + 1e-3 * Math.abs(numeric), "grad n=" + n + " e=" + e + " k=" + k);
                }
            }
        }
    }

    @Test
    void miLossRewardsPeakedBalancedRouting() {
        int n = 4, e = 4;
        float[] s = new float[n * e], logS = new float[n * e];
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < e; i++) {
                s[t * e + i] = i == t ? 0.97f : 0.01f;
                logS[t * e + i] = (float) Math.log(s[t * e + i]);
            }
        }
        RouterLoss.Entropies peaked = RouterLoss.entropies(s, logS, n, e, new double[e]);
        java.util.Arrays.fill(s, 0.25f);
        java.util.Arrays.fill(logS, (float) Math.log(0.25));
        RouterLoss.Entropies uniform = RouterLoss.entropies(s, logS, n, e, new double[e]);
        assertEquals(Math.log(4), uniform.marginal(), 1e-6);
        assertEquals(Math.log(4), uniform.conditional(), 1e-6);
        assertTrue(peaked.mi() < uniform.mi() - 1.0, "peaked and balanced must score lower");
    }

    /** Switch loss written directly from the router logits, in double, with the counts held fixed. */
    private static double switchFromLogits(double[] z, int n, int e, int[] counts, int slots) {
        double[] p = new double[e];
        for (int t = 0; t < n; t++) {
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            for (int i = 0; i < e; i++) max = Math.max(max, z[t * e + i]);
            for (int i = 0; i < e; i++) sum += Math.exp(z[t * e + i] - max);
            for (int i = 0; i < e; i++) p[i] += Math.exp(z[t * e + i] - max) / sum / n;
        }
        double l = 0;
        for (int i = 0; i < e; i++) l += (double) counts[i] / slots * p[i];
        return e * l;
    }

    @Test
    void switchLossAndGradientMatchADirectComputation() {
        double weight = 2.0; // not 1, so that a dropped weight shows
        for (int[] shape : new int[][] {{1, 3}, {6, 3}, {33, 8}, {12, 16}}) {
            int n = shape[0], e = shape[1], k = Math.min(2, e);
            SplittableRandom r = new SplittableRandom(n * 17 + e);
            double[] z = new double[n * e];
            for (int i = 0; i < z.length; i++) z[i] = r.nextGaussian() * 2;
            // counts from each token's top-k, as the training forward takes them; a constant below
            int[] counts = new int[e];
            for (int t = 0; t < n; t++) {
                boolean[] taken = new boolean[e];
                for (int j = 0; j < k; j++) {
                    int best = -1;
                    for (int i = 0; i < e; i++) {
                        if (!taken[i] && (best < 0 || z[t * e + i] > z[t * e + best])) best = i;
                    }
                    taken[best] = true;
                    counts[best]++;
                }
            }
            int slots = n * k;
            float[] s = new float[n * e], logS = new float[n * e];
            softmax(z, s, logS, n, e);
            double[] pBar = new double[e];
            RouterLoss.entropies(s, logS, n, e, pBar);
            assertEquals(switchFromLogits(z, n, e, counts, slots), RouterLoss.switchLoss(pBar, counts, slots, e), 1e-6,
                    "loss n=" + n + " e=" + e);

            // Gradient w.r.t. logits: dS from switchBackward, then the softmax backward, against
            // central differences of weight * loss.
            float[] dS = new float[n * e];
            RouterLoss.switchBackward(counts, slots, n, e, weight, dS);
            for (int t = 0; t < n; t++) {
                double dot = 0;
                for (int i = 0; i < e; i++) dot += (double) s[t * e + i] * dS[t * e + i];
                for (int i = 0; i < e; i++) {
                    int j = t * e + i;
                    double analytic = s[j] * (dS[j] - dot);
                    double h0 = 1e-5, keep = z[j];
                    z[j] = keep + h0;
                    double up = weight * switchFromLogits(z, n, e, counts, slots);
                    z[j] = keep - h0;
                    double down = weight * switchFromLogits(z, n, e, counts, slots);
                    z[j] = keep;
                    double numeric = (up - down) / (2 * h0);
                    assertEquals(numeric, analytic, 2e-6 + 1e-3 * Math.abs(numeric), "grad n=" + n + " e=" + e + " k=" + j);
                }
            }
        }
    }
}
