package dev.dsmoe.kernels;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class CachedAttentionTest {

    /** Rows at arbitrary positions, GQA mapping, strided q/out, the cache in one block: against a double two-pass softmax. */
    @Test
    void matchesADoubleReference() {
        matchesADoubleReference(128);
    }

    /** The same cache cut into blocks of 8 and of 1 positions, each row with its own table: the same results. */
    @Test
    void pagedCachesMatchTheReference() {
        matchesADoubleReference(8);
        matchesADoubleReference(1);
    }

    private static void matchesADoubleReference(int blockSize) {
        SplittableRandom rnd = new SplittableRandom(1);
        int D = 12, heads = 6, hkv = 2, positions = 70, rows = 5, kvStride = hkv * D + 3, qStride = heads * D + 5;
        int[] kvHeadOf = Attention.moaMapping(1, heads, hkv);
        float[] k = TestArrays.uniform(rnd, positions * kvStride + 7, 2.0);
        float[] v = TestArrays.uniform(rnd, positions * kvStride + 7, 1.0);
        float[] q = TestArrays.uniform(rnd, rows * qStride, 2.0);
        int[] pos = {0, 1, 17, 69, 40};
        float[] out = new float[rows * qStride];
        // Blocks hold each block's keys from float 3 and its values after them; rows share blocks, as a batch's rows of one sequence do.
        int vOff = 3 + blockSize * kvStride;
        float[][] table = new float[(positions + blockSize - 1) / blockSize][];
        for (int b = 0; b < table.length; b++) {
            table[b] = new float[vOff + blockSize * kvStride + 5];
            for (int i = 0; i < blockSize && b * blockSize + i < positions; i++) {
                System.arraycopy(k, 7 + (b * blockSize + i) * kvStride, table[b], 3 + i * kvStride, kvStride);
                System.arraycopy(v, 7 + (b * blockSize + i) * kvStride, table[b], vOff + i * kvStride, kvStride);
            }
        }
        float[][][] tables = new float[rows][][];
        java.util.Arrays.fill(tables, table);
        CachedAttention.forward(q, 0, qStride, rows, heads, kvHeadOf, tables, 3, vOff, blockSize, kvStride, D, pos, 0, out, 0,
                qStride);
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                int g = kvHeadOf[h], p = pos[r];
                double[] s = new double[p + 1];
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int j = 0; j <= p; j++) {
                    double dot = 0;
                    for (int i = 0; i < D; i++) dot += (double) q[r * qStride + h * D + i] * k[7 + j * kvStride + g * D + i];
                    s[j] = dot / Math.sqrt(D);
                    max = Math.max(max, s[j]);
                }
                for (int j = 0; j <= p; j++) sum += s[j] = Math.exp(s[j] - max);
                double[] ref = new double[D];
                for (int j = 0; j <= p; j++) {
                    for (int i = 0; i < D; i++) ref[i] += s[j] / sum * v[7 + j * kvStride + g * D + i];
                }
                TestArrays.assertClose("row " + r + " head " + h, ref, out, r * qStride + h * D, 1e-5, 1e-4);
            }
        }
    }
}
