package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link Matmul#pieceSums} (decode's output products summed into their tokens' rows) against
 * double sums over each token's experts, in every weight format (its weights as it holds them),
 * and each token's sums bit for bit the same alone as among others.
 */
class PieceSumsTest {

    @Test
    void pieceSumsMatchDoubleSumsAndDoNotDependOnTheOtherTokens() {
        // cols: lane blocks only (multiples of 32), a tail past them, fewer than a lane block;
        // rows not a multiple of the tile of 4; a quickstart model's short expert rows (64; 40: lane
        // blocks and a tail)
        int[][] shapes = {{6, 37, 128}, {5, 70, 100}, {3, 9, 7}, {8, 130, 256}, {9, 33, 64}, {5, 21, 40}};
        SplittableRandom rnd = new SplittableRandom(11);
        for (int[] shape : shapes) {
            int experts = shape[0], rows = shape[1], cols = shape[2];
            float[] w = TestArrays.uniform(rnd, experts * rows * cols, 1.0);
            for (MatVec.DType dt : MatVec.DType.values()) {
                MemorySegment seg = dt == MatVec.DType.F32 ? MemorySegment.ofArray(w) : dt.write(Arena.ofAuto(), w, experts * rows, cols);
                TensorView weights = dt.view(seg, 0, experts * rows, cols).stackedExperts(experts);
                float[] wq = new float[w.length];
                for (int r = 0; r < experts * rows; r++) weights.copyRow(r, wq, r * cols);
                check(dt + " " + experts + "x[" + rows + "x" + cols + "]", weights, wq, experts, rows, cols, rnd);
            }
        }
    }

    private static void check(String what, TensorView weights, float[] wq, int experts, int rows, int cols,
                              SplittableRandom rnd) {
        int tokens = 7;
        // each token's experts: every expert for token 0 (four or more tokens share most experts,
        // so the 4-slot kernel runs), a random subset for the others, token 5 none
        List<List<Integer>> chosen = new ArrayList<>();
        for (int t = 0; t < tokens; t++) {
            List<Integer> c = new ArrayList<>();
            for (int e = 0; e < experts; e++) if (t == 0 || (t != 5 && rnd.nextInt(4) != 0)) c.add(e);
            chosen.add(c);
        }
        int pieces = 0;
        for (List<Integer> c : chosen) pieces += c.size();
        // input rows in grouped order (by expert, then token), as ExpertGroups lays them out
        int[] inRow = new int[pieces], expert = new int[pieces], slot = new int[pieces];
        int n = 0;
        for (int e = 0; e < experts; e++) {
            for (int t = 0; t < tokens; t++) {
                if (!chosen.get(t).contains(e)) continue;
                inRow[n] = n;
                expert[n] = e;
                slot[n++] = t;
            }
        }
        float[] x = TestArrays.uniform(rnd, pieces * cols, 1.0);
        int ldy = rows + 3;
        int[] outRow = {4, 0, 6, 2, 1, 5, 3}; // slots to rows of y in another order
        float[] y0 = TestArrays.uniform(rnd, tokens * ldy, 1.0);
        float[] y = y0.clone();
        Matmul mm = Matmul.forInference();
        mm.pieceSums(F32Tensor.of(y, tokens, ldy), F32Tensor.of(x, pieces, cols), weights, n, inRow, expert, slot, tokens, outRow);
        // the same bits on 1 and 4 threads (4: the one- and two-token ways split the rows in ranges)
        int threads = Parallel.threads();
        try {
            for (int th : new int[] {1, 4}) {
                Parallel.setThreads(th);
                float[] yt = y0.clone();
                mm.pieceSums(F32Tensor.of(yt, tokens, ldy), F32Tensor.of(x, pieces, cols), weights, n, inRow, expert, slot, tokens, outRow);
                assertArrayEquals(y, yt, what + ": " + th + " threads differ");
                for (int t = 0; t < tokens; t++) {
                    float[] alone = y0.clone(), again = y0.clone();
                    pieceSumsOf(mm, t, alone, x, weights, n, inRow, expert, slot, pieces, cols, tokens, ldy, outRow);
                    Parallel.setThreads(threads);
                    pieceSumsOf(mm, t, again, x, weights, n, inRow, expert, slot, pieces, cols, tokens, ldy, outRow);
                    Parallel.setThreads(th);
                    assertArrayEquals(again, alone, what + ": token " + t + " alone on " + th + " threads differs");
                }
            }
        } finally {
            Parallel.setThreads(threads);
        }

        double[] ref = new double[tokens * ldy];
        for (int i = 0; i < ref.length; i++) ref[i] = y0[i];
        for (int p = 0; p < n; p++) {
            for (int r = 0; r < rows; r++) {
                double s = 0;
                for (int c = 0; c < cols; c++) s += (double) wq[(expert[p] * rows + r) * cols + c] * x[inRow[p] * cols + c];
                ref[outRow[slot[p]] * ldy + r] += s;
            }
        }
        TestArrays.assertClose(what, ref, y, 0, 1e-4, 1e-5);

        // each token alone: the same bits
        for (int t = 0; t < tokens; t++) {
            float[] yt = y0.clone();
            pieceSumsOf(mm, t, yt, x, weights, n, inRow, expert, slot, pieces, cols, tokens, ldy, outRow);
            int o = outRow[t] * ldy;
            assertArrayEquals(java.util.Arrays.copyOfRange(y, o, o + ldy), java.util.Arrays.copyOfRange(yt, o, o + ldy),
                    what + ": token " + t + " alone differs from its sums among the others");
        }
    }

    // Token t's pieces alone (one slot) into y.
    private static void pieceSumsOf(Matmul mm, int t, float[] y, float[] x, TensorView weights, int n, int[] inRow, int[] expert,
                                    int[] slot, int pieces, int cols, int tokens, int ldy, int[] outRow) {
        int m = 0;
        int[] inT = new int[pieces], eT = new int[pieces], sT = new int[pieces];
        for (int p = 0; p < n; p++) {
            if (slot[p] != t) continue;
            inT[m] = inRow[p];
            eT[m] = expert[p];
            sT[m++] = 0;
        }
        mm.pieceSums(F32Tensor.of(y, tokens, ldy), F32Tensor.of(x, pieces, cols), weights, m, inT, eT, sT, 1, new int[] {outRow[t]});
    }

    @Test
    void piecesOutOfExpertOrderAreRefused() {
        float[] w = new float[2 * 4 * 8];
        TensorView weights = F32Tensor.of(w, 8, 8).stackedExperts(2);
        float[] x = new float[16], y = new float[8];
        assertThrows(IllegalArgumentException.class, () -> Matmul.forInference().pieceSums(F32Tensor.of(y, 1, 8),
                F32Tensor.of(x, 2, 8), weights, 2, new int[] {0, 1}, new int[] {1, 0}, new int[] {0, 0}, 1, new int[] {0}));
    }
}
