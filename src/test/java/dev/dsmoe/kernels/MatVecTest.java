package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;

class MatVecTest {

    static Stream<Arguments> shapes() {
        Stream.Builder<Arguments> b = Stream.builder();
        for (int rows : new int[] {1, 3, 17, 129}) {
            for (int cols : new int[] {1, 3, 17, 129, 1000}) {
                for (int m : new int[] {1, 2, 3, 4, 5, 9}) {
                    b.add(Arguments.of(rows, cols, m));
                }
            }
        }
        return b.build();
    }

    private static float[] random(SplittableRandom r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (r.nextDouble() * 2 - 1);
        return a;
    }

    /** Tolerance: 1e-5 relative to the sum of |w·x| terms, the bound for fp32 accumulation of this length. */
    private static void check(double[] ref, double[] absSum, float[] y, int yOff, int ldy, int m, int rows, double[] old) {
        for (int i = 0; i < m; i++) {
            for (int r = 0; r < rows; r++) {
                double want = ref[i * rows + r] + (old == null ? 0 : old[i * rows + r]);
                float got = y[yOff + i * ldy + r];
                double tol = 1e-5 * (absSum[i * rows + r] + (old == null ? 0 : Math.abs(old[i * rows + r]))) + 1e-6;
                assertEquals(want, got, tol, "m=" + i + " r=" + r);
            }
        }
    }

    @ParameterizedTest(name = "rows={0} cols={1} m={2}")
    @MethodSource("shapes")
    void f32MatchesDoubleReference(int rows, int cols, int m) {
        SplittableRandom rnd = new SplittableRandom(rows * 1000L + cols * 10L + m);
        int wOff = 5, xOff = 3, yOff = 2, ldy = rows + 7;
        float[] w = random(rnd, wOff + rows * cols);
        float[] x = random(rnd, xOff + m * cols);
        double[] ref = new double[m * rows], abs = new double[m * rows];
        for (int i = 0; i < m; i++)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    double t = (double) w[wOff + r * cols + c] * x[xOff + i * cols + c];
                    ref[i * rows + r] += t;
                    abs[i * rows + r] += Math.abs(t);
                }
        float[] y = new float[yOff + m * ldy];
        java.util.Arrays.fill(y, Float.NaN); // overwritten, never read, when not accumulating
        F32Tensor view = F32Tensor.of(w, wOff, rows, cols);
        view.matVec(x, xOff, m, y, yOff, ldy, false);
        check(ref, abs, y, yOff, ldy, m, rows, null);

        double[] old = new double[m * rows];
        for (int i = 0; i < m; i++) for (int r = 0; r < rows; r++) old[i * rows + r] = y[yOff + i * ldy + r];
        view.matVec(x, xOff, m, y, yOff, ldy, true);
        double[] twice = ref.clone();
        check(twice, abs, y, yOff, ldy, m, rows, old);
    }

    @ParameterizedTest(name = "rows={0} cols={1} m={2}")
    @MethodSource("shapes")
    void bf16FromMappedSegmentMatchesDoubleReference(int rows, int cols, int m) {
        SplittableRandom rnd = new SplittableRandom(rows * 7919L + cols * 31L + m);
        float[] wf = random(rnd, rows * cols);
        float[] x = random(rnd, m * cols);
        try (Arena arena = Arena.ofShared()) {
            long base = 6; // unaligned start, as inside a safetensors file
            MemorySegment seg = arena.allocate(base + 2L * rows * cols);
            for (int i = 0; i < wf.length; i++) {
                seg.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), base + 2L * i, Bf16.fromFloat(wf[i]));
            }
            double[] ref = new double[m * rows], abs = new double[m * rows];
            for (int i = 0; i < m; i++)
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++) {
                        double t = (double) Bf16.toFloat(Bf16.fromFloat(wf[r * cols + c])) * x[i * cols + c];
                        ref[i * rows + r] += t;
                        abs[i * rows + r] += Math.abs(t);
                    }
            float[] y = new float[m * rows];
            MatVec.DType.BF16.view(seg, base, rows, cols).matVec(x, 0, m, y, 0, rows, false);
            check(ref, abs, y, 0, rows, m, rows, null);
        }
    }

    /** {@code w} ({@code [rows, cols]}) in every format: each DType's view of it written to native memory, and fp32 on the heap. */
    static List<TensorView> everyFormat(float[] w, int rows, int cols) {
        List<TensorView> views = new ArrayList<>();
        views.add(F32Tensor.of(w, rows, cols));
        for (MatVec.DType dt : MatVec.DType.values()) views.add(dt.view(dt.write(Arena.ofAuto(), w, rows, cols), 0, rows, cols));
        return views;
    }

    /**
     * The batched engine's premise: a multi-row product gives every output the single-row
     * kernel's bits for the same (weight row, input row), whatever M (1 to 64, so every mix of
     * 4-input tiles and single-input remainders), whatever tile or thread chunk the output falls
     * in (203 rows: tiles of fewer than 4 rows at chunk ends), overwriting or accumulating, in
     * every format, with column tails (7 < one vector; 100 and 333, not multiples of the vector
     * length or of a Q8 block; 96, whole Q8 blocks, which from 8 inputs on run over a tile unpacked to
     * fp32). The single rows themselves match a double-precision reference.
     */
    @Test
    void everyOutputOfAMultiRowProductHasTheSingleRowBits() {
        int rows = 203, maxM = 64, ldy = rows + 5;
        for (int cols : new int[] {7, 100, 333, 96}) {
            SplittableRandom rnd = new SplittableRandom(cols);
            float[] wf = random(rnd, rows * cols), x = random(rnd, maxM * cols), base = random(rnd, maxM * ldy);
            for (TensorView w : everyFormat(wf, rows, cols)) {
                String what = w + " cols=" + cols;
                float[] single = new float[maxM * rows];
                for (int i = 0; i < maxM; i++) w.matVec(x, i * cols, 1, single, i * rows, rows, false);
                float[] wr = new float[cols];
                for (int r = 0; r < rows; r++) {
                    w.copyRow(r, wr, 0);
                    for (int i = 0; i < maxM; i += 7) {
                        double ref = 0, abs = 0;
                        for (int c = 0; c < cols; c++) {
                            ref += (double) wr[c] * x[i * cols + c];
                            abs += Math.abs((double) wr[c] * x[i * cols + c]);
                        }
                        assertEquals(ref, single[i * rows + r], 1e-5 * abs + 1e-6, what + " row " + r + " input " + i);
                    }
                }
                for (int threads : new int[] {1, 2, 3}) {
                    TestArrays.withThreads(threads, () -> {
                        for (int m = 1; m <= maxM; m++) {
                            float[] y = new float[m * ldy];
                            java.util.Arrays.fill(y, Float.NaN);
                            w.matVec(x, 0, m, y, 0, ldy, false);
                            float[] acc = base.clone();
                            w.matVec(x, 0, m, acc, 0, ldy, true);
                            for (int i = 0; i < m; i++) {
                                float[] want = java.util.Arrays.copyOfRange(single, i * rows, (i + 1) * rows);
                                assertArrayEquals(want, java.util.Arrays.copyOfRange(y, i * ldy, i * ldy + rows),
                                        what + " threads=" + Parallel.threads() + " m=" + m + " input " + i);
                                for (int r = 0; r < rows; r++) want[r] = base[i * ldy + r] + want[r];
                                assertArrayEquals(want, java.util.Arrays.copyOfRange(acc, i * ldy, i * ldy + rows),
                                        what + " accumulating, threads=" + Parallel.threads() + " m=" + m + " input " + i);
                            }
                        }
                    });
                }
            }
        }
    }

    /** The tiles' lane sums (16 accumulators, or the first 4 for one input row) have {@link Simd#addLanes}'s bits. */
    @Test
    void tileLaneSumsHaveAddLanesBits() {
        var f = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;
        int lanes = f.length();
        SplittableRandom rnd = new SplittableRandom(7);
        for (int trial = 0; trial < 200; trial++) {
            float[] acc = new float[MatVec.TILE_ACCUMULATORS * lanes];
            for (int i = 0; i < acc.length; i++) acc[i] = (float) ((rnd.nextDouble() * 2 - 1) * Math.pow(10, rnd.nextInt(-3, 4)));
            float[] all = acc.clone(), four = acc.clone();
            MatVec.tileLaneSums(all);
            MatVec.tileLaneSums4(four);
            for (int k = 0; k < MatVec.TILE_ACCUMULATORS; k++) {
                float want = Simd.addLanes(jdk.incubator.vector.FloatVector.fromArray(f, acc, k * lanes));
                assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(MatVec.tileSum(all, k)), "accumulator " + k);
                if (k < 4) assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(MatVec.tileSum4(four, k)), "of 4: " + k);
            }
        }
    }

    @Test
    void bf16RoundsToNearestEven() {
        SplittableRandom rnd = new SplittableRandom(42);
        for (int i = 0; i < 100_000; i++) {
            float f = Float.intBitsToFloat(rnd.nextInt()) ;
            if (Float.isNaN(f) || Float.isInfinite(f)) continue;
            short h = Bf16.fromFloat(f);
            float back = Bf16.toFloat(h);
            // The two bf16 neighbours of f: truncation and one ulp further from zero.
            int bits = Float.floatToRawIntBits(f);
            float lo = Float.intBitsToFloat(bits & 0xffff0000);
            float hi = Float.intBitsToFloat((bits & 0xffff0000) + 0x10000);
            double dLo = Math.abs((double) f - lo), dHi = Math.abs((double) f - hi);
            if (Float.isInfinite(hi) && !Float.isInfinite(back)) {
                assertEquals(lo, back);
                continue;
            }
            float want = dLo < dHi ? lo : dHi < dLo ? hi : (((bits >>> 16) & 1) == 0 ? lo : hi);
            assertEquals(want, back, "f=" + f);
        }
        assertTrue(Float.isNaN(Bf16.toFloat(Bf16.fromFloat(Float.NaN))));
        assertEquals(1.0f, Bf16.toFloat(Bf16.fromFloat(1.0f)));
    }

    @Test
    void dtypeNamesParseInAnyCase() {
        assertEquals(MatVec.DType.F32, MatVec.DType.parse("fp32"));
        assertEquals(MatVec.DType.BF16, MatVec.DType.parse(" BF16"));
        assertEquals(MatVec.DType.Q8_0, MatVec.DType.parse("Q8_0"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MatVec.DType.parse("int4"));
        assertEquals("unknown weight type 'int4': use f32, bf16 or q8_0", e.getMessage());
    }

    @Test
    void rejectsWeightsOutsideTheSegment() {
        float[] w = new float[10];
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> F32Tensor.of(w, 0, 4, 3).matVec(new float[3], 0, 1, new float[4], 0, 4, false));
        assertTrue(e.getMessage().contains("exceed"), e.getMessage());
    }

    @Test
    void memoryProbeSumsEveryElement() {
        float[] a = new float[1_000_003];
        double want = 0;
        for (int i = 0; i < a.length; i++) {
            a[i] = (i % 7) - 3;
            want += a[i];
        }
        assertEquals(want, MemoryProbe.parallelSum(a), 1e-6);
    }

    @Test
    void memoryProbeStreamsReadCopyAndTriadEveryElement() {
        int n = 1_000_003;
        float[] a = new float[n], b = new float[n], c = new float[n], d = new float[n];
        double want = 0;
        for (int i = 0; i < n; i++) {
            a[i] = (i % 7) - 3;
            b[i] = (i % 5) - 2;
            c[i] = (i % 3) - 1;
            d[i] = (i % 11) - 5;
            want += a[i] + b[i] + c[i] + d[i];
        }
        for (int threads = 1; threads <= 3; threads++) {
            int t = threads;
            TestArrays.withThreads(t, () -> {
                assertEquals(sum(a) + sum(b), MemoryProbe.readSum(a, b), 1e-6, "2 streams, threads " + t);
            });
        }
        assertEquals(want, MemoryProbe.readSum(a, b, c, d), 1e-6);
        float[] copy = new float[n];
        MemoryProbe.copy(d, copy);
        assertArrayEquals(d, copy);
        float[] triad = new float[n];
        MemoryProbe.triad(triad, a, b, 0.5f);
        for (int i = 0; i < n; i++) assertEquals(a[i] + 0.5f * b[i], triad[i], 0f, "triad " + i);
        assertThrows(IllegalArgumentException.class, () -> MemoryProbe.readSum(a, new float[3]));
    }

    private static double sum(float[] a) {
        double s = 0;
        for (float v : a) s += v;
        return s;
    }
}
