package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

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
}
