package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link Matmul#forwardShared}: products of weights that read the same input rows, in one pass
 * over all their rows, give each output the bits of {@link Matmul#forward} with the weight alone,
 * in every format, for one input row, a few, and the many of the unpacked tiles, with weights whose
 * row counts are not multiples of the tile or of a thread's chunk; and outside the mat-vec's row
 * limit it falls back to the products one by one.
 */
class SharedInputProductsTest {

    private static final int[] ROWS = {7, 130, 4, 513};

    @ParameterizedTest
    @EnumSource(MatVec.DType.class)
    void eachOutputHasItsOwnProductsBits(MatVec.DType dtype) {
        int cols = 96;
        SplittableRandom rnd = new SplittableRandom(11);
        TensorView[] w = new TensorView[ROWS.length];
        for (int i = 0; i < ROWS.length; i++) {
            w[i] = dtype.view(dtype.write(Arena.ofAuto(), TestArrays.uniform(rnd, ROWS[i] * cols, 1.0), ROWS[i], cols), 0, ROWS[i], cols);
        }
        for (int threads : new int[] {1, 2, 3}) {
            int before = Parallel.threads();
            Parallel.setThreads(threads);
            try {
                for (int m : new int[] {1, 3, 9}) {
                    F32Tensor in = F32Tensor.of(TestArrays.uniform(rnd, (m + 2) * cols, 1.0), m + 2, cols);
                    TensorView[] together = new TensorView[ROWS.length];
                    for (int i = 0; i < ROWS.length; i++) together[i] = F32Tensor.of(new float[(m + 1) * ROWS[i]], m + 1, ROWS[i]);
                    Matmul.matVecOnly().forwardShared(together, 1, in, 2, m, w, ROWS.length, new float[4][], new int[4], new int[4]);
                    for (int i = 0; i < ROWS.length; i++) {
                        F32Tensor alone = F32Tensor.of(new float[(m + 1) * ROWS[i]], m + 1, ROWS[i]);
                        Matmul.matVecOnly().forward(alone, 1, in, 2, m, w[i], false);
                        assertArrayEquals(alone.array(), together[i].array(), dtype + ", weight " + i + ", m=" + m + ", " + threads + " threads");
                    }
                }
            } finally {
                Parallel.setThreads(before);
            }
        }
    }

    /** Past the instance's mat-vec row limit the weights go one by one through {@link Matmul#forward} (GEMM), with its bits. */
    @ParameterizedTest
    @EnumSource(MatVec.DType.class)
    void moreRowsThanTheMatVecTakesGoOneByOne(MatVec.DType dtype) {
        int cols = 64, m = 12;
        SplittableRandom rnd = new SplittableRandom(12);
        TensorView[] w = new TensorView[2];
        for (int i = 0; i < 2; i++) w[i] = dtype.view(dtype.write(Arena.ofAuto(), TestArrays.uniform(rnd, 40 * cols, 1.0), 40, cols), 0, 40, cols);
        F32Tensor in = F32Tensor.of(TestArrays.uniform(rnd, m * cols, 1.0), m, cols);
        Matmul mm = Matmul.forInference(8, false);
        TensorView[] together = {F32Tensor.of(new float[m * 40], m, 40), F32Tensor.of(new float[m * 40], m, 40)};
        mm.forwardShared(together, 0, in, 0, m, w, 2, new float[2][], new int[2], new int[2]);
        for (int i = 0; i < 2; i++) {
            F32Tensor alone = F32Tensor.of(new float[m * 40], m, 40);
            mm.forward(alone, 0, in, 0, m, w[i], false);
            assertArrayEquals(alone.array(), together[i].array(), dtype + ", weight " + i);
        }
    }

    @ParameterizedTest
    @EnumSource(MatVec.DType.class)
    void weightsOfDifferentWidthsAreRefused(MatVec.DType dtype) {
        SplittableRandom rnd = new SplittableRandom(13);
        TensorView a = dtype.view(dtype.write(Arena.ofAuto(), TestArrays.uniform(rnd, 4 * 64, 1.0), 4, 64), 0, 4, 64);
        TensorView b = dtype.view(dtype.write(Arena.ofAuto(), TestArrays.uniform(rnd, 4 * 32, 1.0), 4, 32), 0, 4, 32);
        F32Tensor in = F32Tensor.of(new float[64], 1, 64);
        TensorView[] outs = {F32Tensor.of(new float[4], 1, 4), F32Tensor.of(new float[4], 1, 4)};
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Matmul.matVecOnly().forwardShared(outs, 0, in, 0, 1, new TensorView[] {a, b}, 2, new float[2][], new int[2], new int[2]));
        assertEquals(true, e.getMessage().contains("differ in columns"), e.getMessage());
    }
}
