// Q8_0 four-row tile loops at the preferred vector width (BENCHMARKS.md, session 19). A
// single-file program with no dependency on the jar; run one variant per process (a second
// variant in the same JVM shares the dispatching lambda's profile and times lower):
//
//   $JAVA_HOME/bin/java [-XX:MaxVectorSize=32] --add-modules jdk.incubator.vector \
//       bench/Q8BlockLoopProbe.java ROWS COLS REPS VARIANT THREADS
//
// e.g. 128 4096 20000 blkp 1 (512 KiB of quants: L2) or 16384 4096 60 blkp 2 (64 MiB: memory).
// -XX:MaxVectorSize=32 runs the 256-bit (AVX2) shapes on an AVX-512 machine. The variants, over
// 4 weight rows against one input row (as the engine's tile1):
//   cur    the flat loop over lane blocks, the scale read at c / 32 for every lane block;
//   blk    a loop over blocks, each block's 4 scales broadcast once, an inner loop over its lane
//          blocks (the same bits as cur);
//   blkp   the same with the inner loop over pairs of lane blocks (one pass at 16 lanes, two at 8;
//          the same bits): what Q8Tensor.tile1 runs since session 19;
//   fp32b  the block's dot in fp32, then one FMA by its scale (other bits).
// It prints the best pass after the first quarter (µs, GB/s of quants + scales) and the largest
// relative error of the first 65 outputs against a double-precision sum.
import java.lang.foreign.*;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.*;
import jdk.incubator.vector.*;

public class Q8BlockLoopProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length(), BLOCK = 32;
    static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(F.vectorBitSize() / 4));
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfFloat SCALE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    public static void main(String[] a) throws Exception {
        int rows = Integer.parseInt(a[0]), cols = Integer.parseInt(a[1]), reps = Integer.parseInt(a[2]), threads = Integer.parseInt(a[4]);
        int nb = cols / BLOCK;
        MemorySegment w = Arena.global().allocate((long) rows * cols + 4L * rows * nb, 64);
        long sOff = (long) rows * cols;
        SplittableRandom r = new SplittableRandom(1);
        for (long i = 0; i < sOff; i++) w.set(ValueLayout.JAVA_BYTE, i, (byte) (r.nextInt(255) - 127));
        for (long i = 0; i < (long) rows * nb; i++) w.set(SCALE, sOff + 4 * i, (float) (0.001 + 0.01 * r.nextDouble()));
        float[] x = new float[cols];
        for (int i = 0; i < cols; i++) x[i] = (float) r.nextGaussian();
        ExecutorService ex = Executors.newFixedThreadPool(threads);
        for (String v : a[3].split(",")) {
            float[] y = new float[rows];
            long best = Long.MAX_VALUE;
            for (int rep = 0; rep < reps; rep++) {
                long t0 = System.nanoTime();
                Future<?>[] fs = new Future<?>[threads];
                for (int t = 0; t < threads; t++) {
                    int r0 = rows * t / threads, r1 = rows * (t + 1) / threads;
                    fs[t] = ex.submit(() -> {
                        for (int rr = r0; rr < r1; rr += 4) {
                            long off = (long) rr * cols, soff = sOff + 4L * rr * nb, sRow = 4L * nb;
                            switch (v) {
                                case "cur" -> cur(w, off, soff, sRow, cols, x, y, rr);
                                case "blk" -> blk(w, off, soff, sRow, cols, x, y, rr);
                                case "blkp" -> blkp(w, off, soff, sRow, cols, x, y, rr);
                                case "fp32b" -> fp32b(w, off, soff, sRow, cols, x, y, rr);
                                default -> throw new IllegalArgumentException(v);
                            }
                        }
                    });
                }
                for (Future<?> f : fs) f.get();
                long dt = System.nanoTime() - t0;
                if (rep > reps / 4) best = Math.min(best, dt);
            }
            double bytes = (double) rows * cols + 4.0 * rows * nb;
            double err = 0;
            for (int i = 0; i < rows; i++) {
                double ref = 0;
                for (int c = 0; c < cols; c++) ref += w.get(SCALE, sOff + 4L * (i * nb + c / BLOCK)) * (double) w.get(ValueLayout.JAVA_BYTE, (long) i * cols + c) * x[c];
                err = Math.max(err, Math.abs(ref - y[i]) / (Math.abs(ref) + 1e-3));
                if (i > 64) break;
            }
            System.out.printf("%-6s L=%d %d x %d, %d threads: best %.1f us, %.1f GB/s, y[0]=%.6f rel err %.1e%n", v, L, rows, cols, threads, best / 1e3, bytes / best, y[0], err);
        }
        ex.shutdown();
    }

    static FloatVector wv(MemorySegment w, long o) {
        return (FloatVector) ByteVector.fromMemorySegment(B, w, o, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    static void cur(MemorySegment w, long off, long soff, long sRow, int cols, float[] x, float[] y, int yo) {
        long o0 = off, o1 = off + cols, o2 = off + 2L * cols, o3 = off + 3L * cols;
        long s0 = soff, s1 = soff + sRow, s2 = soff + 2 * sRow, s3 = soff + 3 * sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += L) {
            long sb = 4L * (c / BLOCK);
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = xv.fma(wv(w, o0 + c).mul(w.get(SCALE, s0 + sb)), a0);
            a1 = xv.fma(wv(w, o1 + c).mul(w.get(SCALE, s1 + sb)), a1);
            a2 = xv.fma(wv(w, o2 + c).mul(w.get(SCALE, s2 + sb)), a2);
            a3 = xv.fma(wv(w, o3 + c).mul(w.get(SCALE, s3 + sb)), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD); y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD); y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    // loop over blocks, the block's lane blocks as an inner loop of constant trip count; scale broadcast once per block and row
    static void blk(MemorySegment w, long off, long soff, long sRow, int cols, float[] x, float[] y, int yo) {
        long o0 = off, o1 = off + cols, o2 = off + 2L * cols, o3 = off + 3L * cols;
        long s0 = soff, s1 = soff + sRow, s2 = soff + 2 * sRow, s3 = soff + 3 * sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            FloatVector c0 = FloatVector.broadcast(F, w.get(SCALE, s0 + 4L * b)), c1 = FloatVector.broadcast(F, w.get(SCALE, s1 + 4L * b)),
                    c2 = FloatVector.broadcast(F, w.get(SCALE, s2 + 4L * b)), c3 = FloatVector.broadcast(F, w.get(SCALE, s3 + 4L * b));
            for (int k = 0; k < BLOCK; k += L) {
                int c = b * BLOCK + k;
                FloatVector xv = FloatVector.fromArray(F, x, c);
                a0 = xv.fma(wv(w, o0 + c).mul(c0), a0);
                a1 = xv.fma(wv(w, o1 + c).mul(c1), a1);
                a2 = xv.fma(wv(w, o2 + c).mul(c2), a2);
                a3 = xv.fma(wv(w, o3 + c).mul(c3), a3);
            }
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD); y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD); y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    static void fp32b(MemorySegment w, long off, long soff, long sRow, int cols, float[] x, float[] y, int yo) {
        long o0 = off, o1 = off + cols, o2 = off + 2L * cols, o3 = off + 3L * cols;
        long s0 = soff, s1 = soff + sRow, s2 = soff + 2 * sRow, s3 = soff + 3 * sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            int c = b * BLOCK;
            FloatVector x0 = FloatVector.fromArray(F, x, c), x1 = FloatVector.fromArray(F, x, c + L);
            a0 = x1.fma(wv(w, o0 + c + L), x0.mul(wv(w, o0 + c))).fma(FloatVector.broadcast(F, w.get(SCALE, s0 + 4L * b)), a0);
            a1 = x1.fma(wv(w, o1 + c + L), x0.mul(wv(w, o1 + c))).fma(FloatVector.broadcast(F, w.get(SCALE, s1 + 4L * b)), a1);
            a2 = x1.fma(wv(w, o2 + c + L), x0.mul(wv(w, o2 + c))).fma(FloatVector.broadcast(F, w.get(SCALE, s2 + 4L * b)), a2);
            a3 = x1.fma(wv(w, o3 + c + L), x0.mul(wv(w, o3 + c))).fma(FloatVector.broadcast(F, w.get(SCALE, s3 + 4L * b)), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD); y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD); y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    // loop over blocks, inner loop over pairs of lane blocks (one iteration at 16 lanes, two at 8)
    static void blkp(MemorySegment w, long off, long soff, long sRow, int cols, float[] x, float[] y, int yo) {
        long o0 = off, o1 = off + cols, o2 = off + 2L * cols, o3 = off + 3L * cols;
        long s0 = soff, s1 = soff + sRow, s2 = soff + 2 * sRow, s3 = soff + 3 * sRow;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0, nb = cols / BLOCK; b < nb; b++) {
            FloatVector c0 = FloatVector.broadcast(F, w.get(SCALE, s0 + 4L * b)), c1 = FloatVector.broadcast(F, w.get(SCALE, s1 + 4L * b)),
                    c2 = FloatVector.broadcast(F, w.get(SCALE, s2 + 4L * b)), c3 = FloatVector.broadcast(F, w.get(SCALE, s3 + 4L * b));
            for (int k = 0; k < BLOCK; k += 2 * L) {
                int c = b * BLOCK + k;
                FloatVector xv = FloatVector.fromArray(F, x, c);
                a0 = xv.fma(wv(w, o0 + c).mul(c0), a0);
                a1 = xv.fma(wv(w, o1 + c).mul(c1), a1);
                a2 = xv.fma(wv(w, o2 + c).mul(c2), a2);
                a3 = xv.fma(wv(w, o3 + c).mul(c3), a3);
                xv = FloatVector.fromArray(F, x, c + L);
                a0 = xv.fma(wv(w, o0 + c + L).mul(c0), a0);
                a1 = xv.fma(wv(w, o1 + c + L).mul(c1), a1);
                a2 = xv.fma(wv(w, o2 + c + L).mul(c2), a2);
                a3 = xv.fma(wv(w, o3 + c + L).mul(c3), a3);
            }
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD); y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD); y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }
}
