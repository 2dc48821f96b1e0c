package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import org.junit.jupiter.api.Test;

class TensorViewTest {

    @Test
    void stackedExpertsAreRowBlocksAndExpertColumnsAreColumnBlocks() {
        float[] a = new float[100];
        F32Tensor w = F32Tensor.of(a, 4, 6, 3).stackedExperts(3); // [3 experts x 2 rows, 3]
        assertEquals(3, w.experts());
        assertEquals(4 + 2 * 2 * 3, w.expert(2).off());
        assertEquals(2, w.expert(2).rows());
        assertEquals(3, w.expert(2).ld());
        F32Tensor x = F32Tensor.of(a, 5, 8).expertColumns(4); // [5, 4 experts x 2]
        assertEquals(6, x.expert(3).off());
        assertEquals(2, x.expert(3).cols());
        assertEquals(8, x.expert(3).ld());
        assertEquals(5 * 8 + 6, x.expert(3).rowOff(5));
        assertSame(a, x.expert(1).array());
        F32Tensor plain = F32Tensor.of(a, 2, 2);
        assertSame(plain, plain.expert(0));
        assertThrows(IndexOutOfBoundsException.class, () -> plain.expert(1));
        assertThrows(IllegalArgumentException.class, () -> F32Tensor.of(a, 5, 8).stackedExperts(2));
    }

    /** Every format: row r of the side-by-side copy is expert 0's row r, then expert 1's, ... (the same values, scales and all). */
    @Test
    void expertsSideBySideAreTheirRowsOneAfterAnother() {
        int n = 3, r = 5, c = 64; // Q8_0: two blocks an expert row
        Random rnd = new Random(7);
        float[] v = new float[n * r * c];
        for (int i = 0; i < v.length; i++) v[i] = (float) rnd.nextGaussian();
        try (Arena arena = Arena.ofShared()) { // the copy runs on Parallel's threads
            for (MatVec.DType t : MatVec.DType.values()) {
                MemorySegment seg = arena.allocate(t.bytes((long) n * r, c), 64);
                t.write(seg, n * r, c, i -> v[(int) i]);
                TensorView stacked = t.view(seg, 0, n * r, c).stackedExperts(n);
                assertEquals(t.bytes(r, (long) n * c), stacked.sideBySideBytes(), t.name());
                TensorView wide = stacked.sideBySide(arena.allocate(stacked.sideBySideBytes(), 64));
                assertEquals(r, wide.rows());
                assertEquals(n * c, wide.cols());
                float[] got = new float[n * c], want = new float[n * c];
                for (int i = 0; i < r; i++) {
                    wide.copyRow(i, got, 0);
                    for (int e = 0; e < n; e++) stacked.expert(e).copyRow(i, want, e * c);
                    assertArrayEquals(want, got, t.name() + ", row " + i);
                }
            }
            MemorySegment q = arena.allocate(MatVec.DType.Q8_0.bytes(4, 48), 64);
            TensorView odd = MatVec.DType.Q8_0.view(q, 0, 4, 48).stackedExperts(2); // a block would straddle two experts
            assertThrows(IllegalArgumentException.class, () -> odd.sideBySide(arena.allocate(odd.sideBySideBytes(), 64)));
            TensorView f = MatVec.DType.F32.view(arena.allocate(4L * 4 * 8, 64), 0, 4, 8).stackedExperts(2);
            assertThrows(IllegalArgumentException.class, () -> f.sideBySide(arena.allocate(8)), "too small a destination");
        }
    }
}
