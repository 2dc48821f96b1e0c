// Q8_0 four-row tile kernels on AVX2, one input row (BENCHMARKS.md, session 18). A single-file
// program with no dependency on the jar:
//
//   $JAVA_HOME/bin/java --enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector \
//       bench/Q8TileProbe.java ROWS COLS REPS VARIANT[,VARIANT...] [THREADS]
//
// e.g. 64 4096 3000 (256 KiB of quants: L2) or 16384 4096 40 2 (64 MiB: memory, two threads). The
// variants, over 4 weight rows at a time (as the engine's tile1) unless they say otherwise:
//   cur    the engine's loop: each lane block of 8 quants widened, times its block's scale, FMA;
//   same4  the same arithmetic in a loop over blocks with the 4 lane blocks written out (the
//          scale read once per block): a method this large is compiled badly (about 4x slower);
//   raw    the ceiling of the widening path: no scale at all (wrong results), widen and FMA only;
//   blk2   two rows, a loop over blocks: the block's dot in fp32 over its 4 lane blocks, then one
//          FMA by the block's scale (other bits than cur: the block's dot first, as llama.cpp's q8_0 dot);
//   blk4   the same over four rows (compiled badly, as same4);
//   ilv    another layout: 8 blocks interleaved (byte j*8+l of a group of 256 = element j of
//          block l) and the input permuted alike, so each lane holds one block: 32 widen+FMA steps
//          per group, then one FMA by the 8 blocks' scales loaded as one vector (no broadcast, no
//          multiply per lane block).
// It prints the best pass's µs, GB/s of quants + scales and the largest error of y over sum |w·x|
// against a double-precision reference.
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

public class Q8TileProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_256;
    static final VectorSpecies<Byte> B = ByteVector.SPECIES_64;
    static final int L = 8, BLOCK = 32, G = 256;
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfFloat SCALE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    public static void main(String[] a) throws Exception {
        int rows = Integer.parseInt(a[0]), cols = Integer.parseInt(a[1]), reps = Integer.parseInt(a[2]), nb = cols / BLOCK;
        int threads = a.length > 4 ? Integer.parseInt(a[4]) : 1;
        MemorySegment w = Arena.global().allocate((long) rows * cols + 4L * rows * nb, 64);
        MemorySegment wi = Arena.global().allocate((long) rows * cols + 4L * rows * nb, 64);
        long sOff = (long) rows * cols;
        SplittableRandom r = new SplittableRandom(1);
        for (long i = 0; i < sOff; i++) w.set(ValueLayout.JAVA_BYTE, i, (byte) (r.nextInt(255) - 127));
        for (long i = 0; i < (long) rows * nb; i++) w.set(SCALE, sOff + 4 * i, (float) (0.001 + 0.01 * r.nextDouble()));
        // interleave
        for (long row = 0; row < rows; row++) {
            for (int g = 0; g < cols / G; g++) {
                for (int l = 0; l < 8; l++) for (int j = 0; j < 32; j++) {
                    wi.set(ValueLayout.JAVA_BYTE, row * cols + g * G + j * 8 + l, w.get(ValueLayout.JAVA_BYTE, row * cols + g * G + l * 32 + j));
                }
            }
        }
        MemorySegment.copy(w, sOff, wi, sOff, 4L * rows * nb);
        float[] x = new float[cols], xi = new float[cols], y = new float[rows];
        for (int i = 0; i < cols; i++) x[i] = (float) r.nextGaussian();
        for (int g = 0; g < cols / G; g++) for (int l = 0; l < 8; l++) for (int j = 0; j < 32; j++) xi[g * G + j * 8 + l] = x[g * G + l * 32 + j];
        double[] ref = new double[rows], abs = new double[rows];
        for (int i = 0; i < rows; i++) {
            for (int c = 0; c < cols; c++) {
                double wv = (double) w.get(SCALE, sOff + 4L * ((long) i * nb + c / BLOCK)) * w.get(ValueLayout.JAVA_BYTE, (long) i * cols + c);
                ref[i] += wv * x[c];
                abs[i] += Math.abs(wv * x[c]);
            }
        }
        long bytes = (long) rows * cols + 4L * rows * nb;
        java.util.concurrent.ExecutorService ex = java.util.concurrent.Executors.newFixedThreadPool(threads);
        for (int round = 0; round < 6; round++) { // rounds 0-3 warm the JIT; 4 and 5 are printed
            for (String v : a[3].split(",")) {
                long best = Long.MAX_VALUE;
                for (int rep = 0; rep < reps; rep++) {
                    long t0 = System.nanoTime();
                    java.util.List<java.util.concurrent.Future<?>> fs = new java.util.ArrayList<>();
                    for (int t = 0; t < threads; t++) {
                        int ra = rows * t / threads, rb = rows * (t + 1) / threads;
                        fs.add(ex.submit(() -> {
                            switch (v) {
                                case "cur" -> runCur(w, sOff, nb, cols, x, y, ra, rb);
                                case "ilv" -> runIlv(wi, sOff, nb, cols, xi, y, ra, rb);
                                case "same4" -> runSame4(w, sOff, nb, cols, x, y, ra, rb);
                                case "blk4" -> runBlk4(w, sOff, nb, cols, x, y, ra, rb);
                                case "blk2" -> runBlk2(w, sOff, nb, cols, x, y, ra, rb);
                                case "raw" -> runRaw(w, sOff, nb, cols, x, y, ra, rb);
                                default -> throw new IllegalArgumentException(v);
                            }
                        }));
                    }
                    for (var f : fs) f.get();
                    best = Math.min(best, System.nanoTime() - t0);
                }
                double err = 0;
                for (int i = 0; i < rows; i++) err = Math.max(err, Math.abs(y[i] - ref[i]) / abs[i]);
                if (round >= 4) System.out.printf("%-6s %9.1f µs  %6.2f GB/s  err %.1e%n", v, best / 1e3, bytes / (double) best, err);
            }
        }
        ex.shutdown();
    }

    static void runCur(MemorySegment w, long sOff, int nb, int cols, float[] x, float[] y, int ra, int rb) {
        for (int i = ra; i < rb; i += 4) cur(w, (long) i * cols, sOff + 4L * i * nb, 4L * nb, cols, x, y, i);
    }
    static void runIlv(MemorySegment w, long sOff, int nb, int cols, float[] x, float[] y, int ra, int rb) {
        for (int i = ra; i < rb; i += 4) ilv(w, (long) i * cols, sOff + 4L * i * nb, 4L * nb, cols, x, y, i);
    }


    static void runSame4(MemorySegment w, long sOff, int nb, int cols, float[] x, float[] y, int ra, int rb) {
        for (int i = ra; i < rb; i += 4) same4(w, (long) i * cols, sOff + 4L * i * nb, 4L * nb, cols, x, y, i);
    }

    static void same4(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols, s1 = s0 + sRow, s2 = s1 + sRow, s3 = s2 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            int c = b * BLOCK;
            float k0 = w.get(SCALE, s0 + 4L * b), k1 = w.get(SCALE, s1 + 4L * b), k2 = w.get(SCALE, s2 + 4L * b), k3 = w.get(SCALE, s3 + 4L * b);
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = xv.fma(widen(w, o0 + c).mul(k0), a0);
            a1 = xv.fma(widen(w, o1 + c).mul(k1), a1);
            a2 = xv.fma(widen(w, o2 + c).mul(k2), a2);
            a3 = xv.fma(widen(w, o3 + c).mul(k3), a3);
            xv = FloatVector.fromArray(F, x, c + 8);
            a0 = xv.fma(widen(w, o0 + c + 8).mul(k0), a0);
            a1 = xv.fma(widen(w, o1 + c + 8).mul(k1), a1);
            a2 = xv.fma(widen(w, o2 + c + 8).mul(k2), a2);
            a3 = xv.fma(widen(w, o3 + c + 8).mul(k3), a3);
            xv = FloatVector.fromArray(F, x, c + 16);
            a0 = xv.fma(widen(w, o0 + c + 16).mul(k0), a0);
            a1 = xv.fma(widen(w, o1 + c + 16).mul(k1), a1);
            a2 = xv.fma(widen(w, o2 + c + 16).mul(k2), a2);
            a3 = xv.fma(widen(w, o3 + c + 16).mul(k3), a3);
            xv = FloatVector.fromArray(F, x, c + 24);
            a0 = xv.fma(widen(w, o0 + c + 24).mul(k0), a0);
            a1 = xv.fma(widen(w, o1 + c + 24).mul(k1), a1);
            a2 = xv.fma(widen(w, o2 + c + 24).mul(k2), a2);
            a3 = xv.fma(widen(w, o3 + c + 24).mul(k3), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }




    static void runRaw(MemorySegment w, long sOff, int nb, int cols, float[] x, float[] y, int ra, int rb) {
        for (int i = ra; i < rb; i += 4) raw(w, (long) i * cols, cols, x, y, i);
    }
    static void raw(MemorySegment w, long o0, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += L) {
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = xv.fma(widen(w, o0 + c), a0);
            a1 = xv.fma(widen(w, o1 + c), a1);
            a2 = xv.fma(widen(w, o2 + c), a2);
            a3 = xv.fma(widen(w, o3 + c), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    static void runBlk4(MemorySegment w, long sOff, int nb, int cols, float[] x, float[] y, int ra, int rb) {
        for (int i = ra; i < rb; i += 4) blk4(w, (long) i * cols, sOff + 4L * i * nb, 4L * nb, cols, x, y, i);
    }
    static FloatVector dot4(MemorySegment w, long o, float[] x, int c) {
        return FloatVector.fromArray(F, x, c + 24).fma(widen(w, o + 24), FloatVector.fromArray(F, x, c + 16).fma(widen(w, o + 16),
                FloatVector.fromArray(F, x, c + 8).fma(widen(w, o + 8), FloatVector.fromArray(F, x, c).mul(widen(w, o)))));
    }
    static void blk4(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols, s1 = s0 + sRow, s2 = s1 + sRow, s3 = s2 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            int c = b * BLOCK;
            a0 = dot4(w, o0 + c, x, c).fma(FloatVector.broadcast(F, w.get(SCALE, s0 + 4L * b)), a0);
            a1 = dot4(w, o1 + c, x, c).fma(FloatVector.broadcast(F, w.get(SCALE, s1 + 4L * b)), a1);
            a2 = dot4(w, o2 + c, x, c).fma(FloatVector.broadcast(F, w.get(SCALE, s2 + 4L * b)), a2);
            a3 = dot4(w, o3 + c, x, c).fma(FloatVector.broadcast(F, w.get(SCALE, s3 + 4L * b)), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }
    static void runBlk2(MemorySegment w, long sOff, int nb, int cols, float[] x, float[] y, int ra, int rb) {
        for (int i = ra; i < rb; i += 2) blk2(w, (long) i * cols, sOff + 4L * i * nb, 4L * nb, cols, x, y, i);
    }
    static void blk2(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, s1 = s0 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            int c = b * BLOCK;
            a0 = dot4(w, o0 + c, x, c).fma(FloatVector.broadcast(F, w.get(SCALE, s0 + 4L * b)), a0);
            a1 = dot4(w, o1 + c, x, c).fma(FloatVector.broadcast(F, w.get(SCALE, s1 + 4L * b)), a1);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
    }

    static FloatVector widen(MemorySegment w, long o) {
        return (FloatVector) ByteVector.fromMemorySegment(B, w, o, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    static void cur(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols, s1 = s0 + sRow, s2 = s1 + sRow, s3 = s2 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += L) {
            long sb = 4L * (c / BLOCK);
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = xv.fma(widen(w, o0 + c).mul(w.get(SCALE, s0 + sb)), a0);
            a1 = xv.fma(widen(w, o1 + c).mul(w.get(SCALE, s1 + sb)), a1);
            a2 = xv.fma(widen(w, o2 + c).mul(w.get(SCALE, s2 + sb)), a2);
            a3 = xv.fma(widen(w, o3 + c).mul(w.get(SCALE, s3 + sb)), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    // interleaved: per group of 8 blocks, 32 lane vectors (lane l = block l), dot in fp32 then times the 8 scales
    static void ilv(MemorySegment w, long o0, long s0, long sRow, int cols, float[] x, float[] y, int yo) {
        long o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols, s1 = s0 + sRow, s2 = s1 + sRow, s3 = s2 + sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int g = 0; g < cols; g += G) {
            FloatVector p0 = FloatVector.zero(F), p1 = p0, p2 = p0, p3 = p0;
            for (int j = 0; j < G; j += L) {
                FloatVector xv = FloatVector.fromArray(F, x, g + j);
                p0 = xv.fma(widen(w, o0 + g + j), p0);
                p1 = xv.fma(widen(w, o1 + g + j), p1);
                p2 = xv.fma(widen(w, o2 + g + j), p2);
                p3 = xv.fma(widen(w, o3 + g + j), p3);
            }
            long sb = 4L * (g / BLOCK);
            a0 = p0.fma(FloatVector.fromMemorySegment(F, w, s0 + sb, LE), a0);
            a1 = p1.fma(FloatVector.fromMemorySegment(F, w, s1 + sb, LE), a1);
            a2 = p2.fma(FloatVector.fromMemorySegment(F, w, s2 + sb, LE), a2);
            a3 = p3.fma(FloatVector.fromMemorySegment(F, w, s3 + sb, LE), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }



}
