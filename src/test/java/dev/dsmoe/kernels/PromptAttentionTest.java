package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link PromptAttention} (a prompt chunk's attention by oneDNN products) against a double
 * two-pass softmax and against {@link CachedAttention}: rows listed out of order and a row left
 * out, several query blocks per KV head, key extents across the rounding, a paged cache; and
 * {@link CachedAttention} leaving alone the rows whose table is null.
 */
class PromptAttentionTest {

    @Test
    void matchesADoubleReferenceAndTheCachedKernel() {
        OneDnnTest.requireOrSkip();
        SplittableRandom rnd = new SplittableRandom(3);
        int D = 16, heads = 6, hkv = 2, blockSize = 16, rows = 150, first = 50, positions = first + rows;
        int kvStride = hkv * D + 3, qStride = heads * D + 5;
        int[] kvHeadOf = Attention.moaMapping(1, heads, hkv);
        assertTrue(PromptAttention.grouped(kvHeadOf, heads));
        assertFalse(PromptAttention.grouped(new int[] {0, 1, 0, 1}, 4));
        float[] k = TestArrays.uniform(rnd, positions * kvStride, 2.0), v = TestArrays.uniform(rnd, positions * kvStride, 1.0);
        float[] q = TestArrays.uniform(rnd, rows * qStride, 2.0);
        int vOff = 2 + blockSize * kvStride;
        float[][] table = new float[(positions + blockSize - 1) / blockSize][];
        for (int b = 0; b < table.length; b++) {
            table[b] = new float[vOff + blockSize * kvStride + 1];
            for (int i = 0; i < blockSize && b * blockSize + i < positions; i++) {
                System.arraycopy(k, (b * blockSize + i) * kvStride, table[b], 2 + i * kvStride, kvStride);
                System.arraycopy(v, (b * blockSize + i) * kvStride, table[b], vOff + i * kvStride, kvStride);
            }
        }
        int[] pos = new int[rows];
        for (int r = 0; r < rows; r++) pos[r] = first + r;
        // the rows listed backwards, row 7 left out
        int[] list = new int[rows - 1];
        for (int r = rows - 1, n = 0; r >= 0; r--) if (r != 7) list[n++] = r;
        float[] out = new float[rows * qStride];
        java.util.Arrays.fill(out, 42f);
        PromptAttention.forward(OneDnn.get(), q, 0, qStride, list, list.length, heads, kvHeadOf, table, 2, vOff, blockSize,
                kvStride, D, pos, out, 0, qStride);
        float[] cached = new float[rows * qStride];
        float[][][] tables = new float[rows][][];
        java.util.Arrays.fill(tables, table);
        tables[3] = null; // left alone by the cached kernel
        cached[3 * qStride] = 5f;
        CachedAttention.forward(q, 0, qStride, rows, heads, kvHeadOf, tables, 2, vOff, blockSize, kvStride, D, pos, 0, cached, 0,
                qStride);
        assertEquals(5f, cached[3 * qStride], "a row without a table is left alone");
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                if (r == 7) {
                    assertEquals(42f, out[r * qStride + h * D], "a row not listed is left alone");
                    continue;
                }
                int g = kvHeadOf[h], p = pos[r];
                double[] s = new double[p + 1];
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int j = 0; j <= p; j++) {
                    double dot = 0;
                    for (int i = 0; i < D; i++) dot += (double) q[r * qStride + h * D + i] * k[j * kvStride + g * D + i];
                    s[j] = dot / Math.sqrt(D);
                    max = Math.max(max, s[j]);
                }
                for (int j = 0; j <= p; j++) sum += s[j] = Math.exp(s[j] - max);
                double[] ref = new double[D];
                for (int j = 0; j <= p; j++) for (int i = 0; i < D; i++) ref[i] += s[j] / sum * v[j * kvStride + g * D + i];
                TestArrays.assertClose("row " + r + " head " + h, ref, out, r * qStride + h * D, 1e-5, 1e-4);
                if (r != 3) TestArrays.assertClose("cached, row " + r + " head " + h, ref, cached, r * qStride + h * D, 1e-5, 1e-4);
            }
        }
    }
}
