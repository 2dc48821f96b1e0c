package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ExpertGroupsTest {

    @Test
    void topKPicksTheLargestScoresWithTiesToTheLowerIndex() {
        float[] s = {0.1f, 0.5f, 0.2f, 0.5f, /* row 2 */ 3f, 1f, 2f, 0f};
        int[] chosen = new int[4];
        ExpertGroups.topK(s, 2, 4, 2, chosen);
        assertArrayEquals(new int[] {1, 3, 0, 2}, chosen);
        assertThrows(IllegalArgumentException.class, () -> ExpertGroups.topK(s, 2, 4, 5, chosen));
    }

    @Test
    void topKMatchesPickingTheBestKTimes() {
        SplittableRandom r = new SplittableRandom(3);
        for (int e : new int[] {1, 2, 4, 16, 32}) {
            for (int k = 1; k <= e; k++) {
                int n = 20;
                float[] s = new float[n * e];
                // few distinct values, so ties are common; some -inf
                for (int i = 0; i < s.length; i++) s[i] = r.nextInt(8) == 0 ? Float.NEGATIVE_INFINITY : r.nextInt(5) * 0.25f;
                int[] chosen = new int[n * k];
                ExpertGroups.topK(s, n, e, k, chosen);
                for (int t = 0; t < n; t++) {
                    boolean[] taken = new boolean[e];
                    for (int j = 0; j < k; j++) { // the best untaken score, the lower index on ties
                        int best = -1;
                        for (int i = 0; i < e; i++) {
                            if (!taken[i] && (best < 0 || s[t * e + i] > s[t * e + best])) best = i;
                        }
                        taken[best] = true;
                        assertEquals(best, chosen[t * k + j], "e " + e + ", k " + k + ", token " + t + ", place " + j);
                    }
                }
            }
        }
    }

    @Test
    void groupingIsAStableCountingSortOfEverySelectedSlot() {
        int n = 50, k = 3, e = 7;
        SplittableRandom r = new SplittableRandom(9);
        int[] chosen = new int[n * k];
        for (int i = 0; i < chosen.length; i++) chosen[i] = r.nextInt(-1, e); // -1: unused slot
        ExpertGroups g = new ExpertGroups(e, n * k);
        g.group(chosen, n, k);
        int seen = 0;
        for (int x = 0; x < e; x++) {
            int prevToken = -1;
            for (int row = g.start(x); row < g.start(x) + g.count(x); row++) {
                assertEquals(x, chosen[g.slot(row)]);
                assertEquals(g.slot(row) / k, g.token(row));
                assertEquals(true, g.token(row) >= prevToken, "token order within an expert");
                prevToken = g.token(row);
                seen++;
            }
        }
        long selected = java.util.Arrays.stream(chosen).filter(c -> c >= 0).count();
        assertEquals(selected, seen);
        assertEquals(selected, g.rows());

        float[] x = new float[n * 2];
        for (int i = 0; i < x.length; i++) x[i] = i;
        float[] out = new float[n * k * 2];
        g.gather(x, 2, out);
        for (int row = 0; row < g.rows(); row++) {
            assertEquals(x[g.token(row) * 2 + 1], out[row * 2 + 1]);
        }
    }
}
