import jdk.incubator.vector.*;
import java.lang.foreign.*;
import java.nio.ByteOrder;
import java.util.*;
import java.util.concurrent.*;

/**
 * Two ways to widen bf16 weights in the one-input 4-row tile (decode's mat-vec), timed one per
 * process: {@code cur}, the engine's (a half-width short load, a widening to int, a 16-bit shift:
 * each weight's lane matches its column) and {@code pairs} (a full-width int load, each int two
 * neighbouring bf16: the even column by a 16-bit shift, the odd one by masking the low half, both
 * FMAs into the same accumulator against the input split the same way; a different summation
 * order, so every bf16 kernel would have to take it at once). GB/s of weights, best of the rounds
 * after the first quarter; {@code -Drows=R -Dlayers=N} (default 8192 x 8: from memory; 256 x 1 keeps
 * them in L2), threads as the second argument.
 *
 * <pre>
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector bench/Bf16PairsProbe.java pairs 2
 * </pre>
 */
public class Bf16PairsProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final int L = F.length();
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    public static void main(String[] a) throws Exception {
        String variant = a[0];
        int threads = Integer.parseInt(a[1]);
        int rows = Integer.getInteger("rows", 8192), cols = Integer.getInteger("cols", 2048), layers = Integer.getInteger("layers", 8);
        int rounds = Integer.getInteger("rounds", 200);
        SplittableRandom rnd = new SplittableRandom(1);
        Arena arena = Arena.ofShared();
        MemorySegment[] w = new MemorySegment[layers];
        for (int l = 0; l < layers; l++) {
            w[l] = arena.allocate(2L * rows * cols, 64);
            for (long i = 0; i < (long) rows * cols; i++) {
                float f = (float) rnd.nextDouble(-1, 1);
                w[l].set(ValueLayout.JAVA_SHORT_UNALIGNED, 2 * i, (short) (Float.floatToRawIntBits(f) >>> 16));
            }
        }
        float[] x = new float[cols], xp = new float[cols];
        for (int i = 0; i < cols; i++) x[i] = (float) rnd.nextDouble(-1, 1);
        // pairs: within each group of 2L columns, the even columns first, then the odd ones
        for (int g = 0; g < cols; g += 2 * L) for (int j = 0; j < L; j++) { xp[g + j] = x[g + 2 * j]; xp[g + L + j] = x[g + 2 * j + 1]; }
        float[][] y = new float[threads][rows];
        boolean pairs = variant.equals("pairs");
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        double[] gbs = new double[rounds];
        for (int r = 0; r < rounds; r++) {
            long t0 = System.nanoTime();
            for (int l = 0; l < layers; l++) {
                MemorySegment ws = w[l];
                List<Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    int r0 = rows * t / threads, r1 = rows * (t + 1) / threads, tt = t;
                    fs.add(pool.submit(() -> {
                        int q = (r1 - r0) / 4; // spaced tiles, as the engine's
                        for (int k = 0; k < q; k++) {
                            long o = 2L * (r0 + k) * cols, s = 2L * q * cols;
                            if (pairs) tilePairs(ws, o, s, cols, xp, y[tt], r0 + k, q);
                            else tileCur(ws, o, s, cols, x, y[tt], r0 + k, q);
                        }
                    }));
                }
                for (Future<?> f : fs) f.get();
            }
            gbs[r] = 2.0 * rows * cols * layers / (System.nanoTime() - t0);
        }
        pool.shutdown();
        double best = 0;
        for (int r = rounds / 4; r < rounds; r++) best = Math.max(best, gbs[r]);
        double[] tail = Arrays.copyOfRange(gbs, rounds / 4, rounds);
        Arrays.sort(tail);
        // check: both against a double reference on row 0 of layer 0
        double ref = 0;
        for (int c = 0; c < cols; c++) ref += (double) x[c] * Float.intBitsToFloat(w[0].get(ValueLayout.JAVA_SHORT_UNALIGNED, 2L * c) << 16);
        float[] y0 = new float[rows];
        if (pairs) tilePairs(w[0], 0, 2L * (rows / 4) * cols, cols, xp, y0, 0, rows / 4);
        else tileCur(w[0], 0, 2L * (rows / 4) * cols, cols, x, y0, 0, rows / 4);
        System.out.printf("%s %d x %d x %d, %d threads, %d lanes: best %.1f GB/s, median %.1f; row 0 %.7g vs %.7g%n", variant, layers, rows, cols,
                threads, L, best, tail[tail.length / 2], y0[0], ref);
    }

    // Bf16Tensor.tile1's loop, copied on purpose: that kernel is private to the engine, and both variants
    // must run under the same harness (threads, tiles, lane sums) for the comparison to mean anything.
    static void tileCur(MemorySegment w, long o0, long s, int cols, float[] x, float[] y, int r, int step) {
        long o1 = o0 + s, o2 = o1 + s, o3 = o2 + s;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += L) {
            long b = 2L * c;
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o0 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
            a1 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o1 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a1);
            a2 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o2 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a2);
            a3 = xv.fma(((IntVector) ShortVector.fromMemorySegment(S, w, o3 + b, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a3);
        }
        y[r] = a0.reduceLanes(VectorOperators.ADD);
        y[r + step] = a1.reduceLanes(VectorOperators.ADD);
        y[r + 2 * step] = a2.reduceLanes(VectorOperators.ADD);
        y[r + 3 * step] = a3.reduceLanes(VectorOperators.ADD);
    }

    static void tilePairs(MemorySegment w, long o0, long s, int cols, float[] xp, float[] y, int r, int step) {
        long o1 = o0 + s, o2 = o1 + s, o3 = o2 + s;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += 2 * L) {
            long b = 2L * c;
            FloatVector xe = FloatVector.fromArray(F, xp, c), xo = FloatVector.fromArray(F, xp, c + L);
            IntVector v0 = IntVector.fromMemorySegment(I, w, o0 + b, LE), v1 = IntVector.fromMemorySegment(I, w, o1 + b, LE),
                    v2 = IntVector.fromMemorySegment(I, w, o2 + b, LE), v3 = IntVector.fromMemorySegment(I, w, o3 + b, LE);
            a0 = xe.fma(v0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
            a1 = xe.fma(v1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a1);
            a2 = xe.fma(v2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a2);
            a3 = xe.fma(v3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a3);
            a0 = xo.fma(v0.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats(), a0);
            a1 = xo.fma(v1.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats(), a1);
            a2 = xo.fma(v2.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats(), a2);
            a3 = xo.fma(v3.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats(), a3);
        }
        y[r] = a0.reduceLanes(VectorOperators.ADD);
        y[r + step] = a1.reduceLanes(VectorOperators.ADD);
        y[r + 2 * step] = a2.reduceLanes(VectorOperators.ADD);
        y[r + 3 * step] = a3.reduceLanes(VectorOperators.ADD);
    }
}
