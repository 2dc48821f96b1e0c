// Q8_0 row-kernel variants on one thread, from cache or from memory (BENCHMARKS.md, session 14).
// A single-file program with no dependency on the jar:
//
//   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector bench/Q8KernelVariantsProbe.java ROWS COLS REPS VARIANT[,VARIANT...]
//
// e.g. 64 4096 3000 (256 KiB of quants: L2) or 16384 4096 40 (64 MiB: memory). One Q8_0 matrix in
// a native segment (quants row after row, then fp32 scales, as Q8Tensor lays them out), one input
// row, 256-bit vectors (8 floats; the probe is for AVX2 machines), rows two at a time:
//   cur     the engine's order and loop: a flat loop over lane blocks, each widened, times its
//           block's scale (read at c / 32 for every lane block), FMA into the row's accumulator;
//   same    the same arithmetic (same bits) in a loop over blocks: the scale read once per block
//           at an index linear in the loop variable, which lets C2 hoist the segment's bounds checks;
//   fp32b   the block's dot in fp32 (unscaled), then one FMA by its scale: a multiply fewer per
//           lane block, other bits;
//   int8    llama.cpp's q8_0 x q8_0: the input quantized per block of 32 to int8 (counted outside
//           the time), 16-bit products of two halves added (|sum| <= 2·127·127 fits), adjacent
//           pairs summed into 32-bit lanes with shifts, then one conversion and one FMA by the two
//           scales' product per block.
// It prints the best pass's µs, GB/s of quants + scales, and the error of y over sum |w·x| against
// a double-precision reference with the fp32 input and against one with the int8-quantized input.
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

public class Q8KernelVariantsProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_256;
    static final VectorSpecies<Byte> B = ByteVector.SPECIES_64, B128 = ByteVector.SPECIES_128;
    static final VectorSpecies<Short> S = ShortVector.SPECIES_256;
    static final int L = 8, BLOCK = 32;
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfFloat SCALE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    public static void main(String[] a) {
        int rows = Integer.parseInt(a[0]), cols = Integer.parseInt(a[1]), reps = Integer.parseInt(a[2]), nb = cols / BLOCK;
        if (rows % 2 != 0 || cols % BLOCK != 0) throw new IllegalArgumentException("rows even, cols a multiple of 32");
        MemorySegment w = Arena.global().allocate((long) rows * cols + 4L * rows * nb, 64);
        long sOff = (long) rows * cols;
        SplittableRandom r = new SplittableRandom(1);
        for (long i = 0; i < sOff; i++) w.set(ValueLayout.JAVA_BYTE, i, (byte) (r.nextInt(255) - 127));
        for (long i = 0; i < (long) rows * nb; i++) w.set(SCALE, sOff + 4 * i, (float) (0.001 + 0.01 * r.nextDouble()));
        float[] x = new float[cols], y = new float[rows], xScale = new float[nb];
        short[] xq = new short[cols];
        for (int i = 0; i < cols; i++) x[i] = (float) r.nextGaussian();
        for (int b = 0; b < nb; b++) {
            float m = 0;
            for (int j = 0; j < BLOCK; j++) m = Math.max(m, Math.abs(x[b * BLOCK + j]));
            xScale[b] = m / 127f;
            for (int j = 0; j < BLOCK; j++) xq[b * BLOCK + j] = (short) (m == 0 ? 0 : Math.round(x[b * BLOCK + j] / xScale[b]));
        }
        double[] ref = new double[rows], refQ = new double[rows], abs = new double[rows];
        for (int i = 0; i < rows; i++) {
            for (int c = 0; c < cols; c++) {
                double wv = (double) w.get(SCALE, sOff + 4L * ((long) i * nb + c / BLOCK)) * w.get(ValueLayout.JAVA_BYTE, (long) i * cols + c);
                ref[i] += wv * x[c];
                refQ[i] += wv * xq[c] * xScale[c / BLOCK];
                abs[i] += Math.abs(wv * x[c]);
            }
        }
        long bytes = (long) rows * cols + 4L * rows * nb;
        for (int round = 0; round < 3; round++) { // rounds 0 and 1 warm the JIT
            for (String v : a[3].split(",")) {
                long best = Long.MAX_VALUE;
                for (int rep = 0; rep < reps; rep++) {
                    long t0 = System.nanoTime();
                    for (int i = 0; i < rows; i += 2) {
                        long o = (long) i * cols, s = sOff + 4L * i * nb, sRow = 4L * nb;
                        switch (v) {
                            case "cur" -> cur(w, o, s, sRow, cols, x, y, i);
                            case "same" -> same(w, o, s, sRow, cols, x, y, i);
                            case "fp32b" -> fp32b(w, o, s, sRow, cols, x, y, i);
                            case "int8" -> int8(w, o, s, sRow, cols, xq, xScale, y, i);
                            default -> throw new IllegalArgumentException("variant " + v + ": cur, same, fp32b or int8");
                        }
                    }
                    best = Math.min(best, System.nanoTime() - t0);
                }
                double err = 0, errQ = 0;
                for (int i = 0; i < rows; i++) {
                    err = Math.max(err, Math.abs(y[i] - ref[i]) / abs[i]);
                    errQ = Math.max(errQ, Math.abs(y[i] - refQ[i]) / abs[i]);
                }
                if (round == 2) {
                    System.out.printf("%-6s %9.1f µs  %6.2f GB/s  error / sum|wx|: %.1e (fp32 input), %.1e (int8 input)%n",
                            v, best / 1e3, bytes / (double) best, err, errQ);
                }
            }
        }
    }

    static FloatVector widen(MemorySegment w, long o) {
        return (FloatVector) ByteVector.fromMemorySegment(B, w, o, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    static FloatVector scale(MemorySegment w, long s) {
        return FloatVector.broadcast(F, w.get(SCALE, s));
    }

    static void cur(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, s1 = s0 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int c = 0; c < cols; c += L) {
            long sb = 4L * (c / BLOCK);
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = xv.fma(widen(w, o0 + c).mul(w.get(SCALE, s0 + sb)), a0);
            a1 = xv.fma(widen(w, o1 + c).mul(w.get(SCALE, s1 + sb)), a1);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
    }

    static FloatVector sameBlock(MemorySegment w, long o, FloatVector s, float[] x, int c, FloatVector a) {
        for (int k = 0; k < BLOCK; k += L) a = FloatVector.fromArray(F, x, c + k).fma(widen(w, o + c + k).mul(s), a);
        return a;
    }

    static void same(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, s1 = s0 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            a0 = sameBlock(w, o0, scale(w, s0 + 4L * b), x, b * BLOCK, a0);
            a1 = sameBlock(w, o1, scale(w, s1 + 4L * b), x, b * BLOCK, a1);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
    }

    static FloatVector blockDot(MemorySegment w, long o, float[] x, int c) {
        FloatVector p = FloatVector.fromArray(F, x, c).mul(widen(w, o + c));
        for (int k = L; k < BLOCK; k += L) p = FloatVector.fromArray(F, x, c + k).fma(widen(w, o + c + k), p);
        return p;
    }

    static void fp32b(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, s1 = s0 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            a0 = blockDot(w, o0, x, b * BLOCK).fma(scale(w, s0 + 4L * b), a0);
            a1 = blockDot(w, o1, x, b * BLOCK).fma(scale(w, s1 + 4L * b), a1);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
    }

    static FloatVector intBlock(MemorySegment w, long o, short[] xq, int c) {
        ShortVector q0 = (ShortVector) ByteVector.fromMemorySegment(B128, w, o + c, LE).convertShape(VectorOperators.B2S, S, 0);
        ShortVector q1 = (ShortVector) ByteVector.fromMemorySegment(B128, w, o + c + 16, LE).convertShape(VectorOperators.B2S, S, 0);
        IntVector p = q0.mul(ShortVector.fromArray(S, xq, c)).add(q1.mul(ShortVector.fromArray(S, xq, c + 16))).reinterpretAsInts();
        IntVector pairs = p.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16).add(p.lanewise(VectorOperators.ASHR, 16));
        return (FloatVector) pairs.convert(VectorOperators.I2F, 0);
    }

    static void int8(MemorySegment w, long o0, long s0, long sRow, int cols, short[] xq, float[] xScale, float[] y, int yo) {
        long o1 = o0 + cols, s1 = s0 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            float sx = xScale[b];
            a0 = intBlock(w, o0, xq, b * BLOCK).fma(FloatVector.broadcast(F, w.get(SCALE, s0 + 4L * b) * sx), a0);
            a1 = intBlock(w, o1, xq, b * BLOCK).fma(FloatVector.broadcast(F, w.get(SCALE, s1 + 4L * b) * sx), a1);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
    }
}
