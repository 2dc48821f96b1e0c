package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class SamplerTest {

    static final float[] LOGITS = {1f, 3f, 2f, 0f, 2.5f};

    @Test
    void greedyAndDegenerateFiltersPickTheArgmax() {
        assertEquals(1, Sampler.greedy(5).sample(LOGITS));
        assertEquals(1, new Sampler(5, 1.0, 1, 1.0, 7).sample(LOGITS));
        assertEquals(1, new Sampler(5, 1.0, 0, 1e-6, 7).sample(LOGITS));
    }

    @Test
    void barredIdsAreNeverSampled() {
        java.util.function.IntPredicate notTheBest = v -> v != 1; // 1 is the argmax of LOGITS
        assertEquals(4, Sampler.greedy(5, notTheBest).sample(LOGITS));
        assertEquals(4, new Sampler(5, 1.0, 1, 1.0, 7, notTheBest).sample(LOGITS));
        assertEquals(4, new Sampler(5, 1.0, 0, 1e-6, 7, notTheBest).sample(LOGITS));
        float[] tied = {0f, 0f, 0f, 0f, 0f}; // equal logits: top-k must not keep a barred id to fill K
        java.util.function.IntPredicate odd = v -> v % 2 == 1;
        Sampler[] samplers = {new Sampler(5, 1.0, 0, 1.0, 3, odd), new Sampler(5, 1.0, 4, 1.0, 3, odd), new Sampler(5, 1.0, 0, 0.9, 3, odd),
            new Sampler(5, 100.0, 3, 0.5, 3, odd)};
        for (Sampler s : samplers) {
            int[] counts = new int[5];
            for (int i = 0; i < 20_000; i++) {
                counts[s.sample(LOGITS)]++;
                counts[s.sample(tied)]++;
            }
            assertEquals(0, counts[0] + counts[2] + counts[4], java.util.Arrays.toString(counts));
        }
        assertThrows(IllegalArgumentException.class, () -> new Sampler(5, 1.0, 0, 1.0, 3, v -> v >= 5));
    }

    @Test
    void sameSeedSameTokens() {
        Sampler a = new Sampler(5, 1.0, 0, 1.0, 42), b = new Sampler(5, 1.0, 0, 1.0, 42), c = new Sampler(5, 1.0, 0, 1.0, 43);
        StringBuilder sa = new StringBuilder(), sb = new StringBuilder(), sc = new StringBuilder();
        for (int i = 0; i < 50; i++) {
            sa.append(a.sample(LOGITS));
            sb.append(b.sample(LOGITS));
            sc.append(c.sample(LOGITS));
        }
        assertEquals(sa.toString(), sb.toString());
        assertNotEquals(sa.toString(), sc.toString());
    }

    @Test
    void frequenciesFollowTheTemperedAndFilteredDistribution() {
        int n = 200_000;
        // temperature 2, no filters
        double[] p = softmax(LOGITS, 2.0, new boolean[] {true, true, true, true, true});
        checkFrequencies(new Sampler(5, 2.0, 0, 1.0, 1), p, n);
        // top-k 3 keeps tokens 1, 4, 2
        p = softmax(LOGITS, 1.0, new boolean[] {false, true, true, false, true});
        checkFrequencies(new Sampler(5, 1.0, 3, 1.0, 2), p, n);
        // top-p 0.6: token 1 (0.455) alone is not enough, 1 + 4 (0.73) is
        p = softmax(LOGITS, 1.0, new boolean[] {false, true, false, false, true});
        checkFrequencies(new Sampler(5, 1.0, 0, 0.6, 3), p, n);
    }

    private static void checkFrequencies(Sampler s, double[] p, int n) {
        int[] counts = new int[p.length];
        for (int i = 0; i < n; i++) counts[s.sample(LOGITS)]++;
        for (int v = 0; v < p.length; v++) {
            double sd = Math.sqrt(n * p[v] * (1 - p[v])) + 1;
            assertTrue(Math.abs(counts[v] - n * p[v]) <= 5 * sd, "token " + v + ": " + counts[v] + " vs " + n * p[v]);
        }
    }

    private static double[] softmax(float[] logits, double temp, boolean[] keep) {
        double[] p = new double[logits.length];
        double sum = 0;
        for (int i = 0; i < p.length; i++) if (keep[i]) sum += p[i] = Math.exp(logits[i] / temp);
        for (int i = 0; i < p.length; i++) p[i] /= sum;
        return p;
    }

    @Test
    void badSettingsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> new Sampler(5, -1, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new Sampler(5, 1, -1, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new Sampler(5, 1, 0, 0, 0));
    }
}
