// The f32 decode mat-vec from memory (8 weights of [8192 x 2048], 256 MiB) on THREADS threads, by
// how the rows are split and walked (BENCHMARKS.md, session 19). A single-file program with no
// dependency on the jar; one variant per process:
//
//   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector bench/RowSplitProbe.java VARIANT THREADS REPS
//
//   spaced  each thread half the rows, tiles of 4 rows a quarter of its range apart (the engine's);
//   rows    each thread half the rows, one row at a time (one stream a thread);
//   rowsil  one row at a time, the threads taking alternate chunks of -Dchunk rows (16), so both
//           read neighbouring memory (llama.cpp's way of sharing a mat-vec);
//   adj     each thread half the rows, tiles of 4 adjacent rows;
//   adjil   tiles of 4 adjacent rows, alternate chunks.
// It prints the median and best GB/s of the passes after the first quarter.
import java.lang.foreign.*;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.*;
import jdk.incubator.vector.*;

public class RowSplitProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    public static void main(String[] a) throws Exception {
        String v = a[0];
        int threads = Integer.parseInt(a[1]), rows = 8192, cols = 2048, layers = 8, reps = Integer.parseInt(a[2]);
        int chunk = Integer.getInteger("chunk", 16);
        MemorySegment[] w = new MemorySegment[layers];
        SplittableRandom r = new SplittableRandom(1);
        for (int l = 0; l < layers; l++) {
            w[l] = Arena.global().allocate(4L * rows * cols, 64);
            for (long i = 0; i < (long) rows * cols; i++) w[l].setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) r.nextDouble(-1, 1));
        }
        float[] x = new float[cols], y = new float[rows];
        for (int i = 0; i < cols; i++) x[i] = (float) r.nextDouble(-1, 1);
        ExecutorService ex = Executors.newFixedThreadPool(threads);
        double best = 0;
        double[] all = new double[reps];
        for (int rep = 0; rep < reps; rep++) {
            long t0 = System.nanoTime();
            for (int l = 0; l < layers; l++) {
                MemorySegment m = w[l];
                Future<?>[] fs = new Future<?>[threads];
                for (int t = 0; t < threads; t++) {
                    int tt = t;
                    fs[t] = ex.submit(() -> {
                        switch (v) {
                            case "spaced" -> { int r0 = rows * tt / threads, r1 = rows * (tt + 1) / threads; spaced(m, cols, x, y, r0, r1); }
                            case "rows" -> { int r0 = rows * tt / threads, r1 = rows * (tt + 1) / threads; for (int i = r0; i < r1; i++) y[i] = row(m, 4L * i * cols, cols, x); }
                            case "rowsil" -> { for (int c0 = tt * chunk; c0 < rows; c0 += threads * chunk) for (int i = c0; i < c0 + chunk; i++) y[i] = row(m, 4L * i * cols, cols, x); }
                            case "adj" -> { int r0 = rows * tt / threads, r1 = rows * (tt + 1) / threads; for (int i = r0; i < r1; i += 4) tile(m, 4L * i * cols, 4L * cols, cols, x, y, i, 1); }
                            case "adjil" -> { for (int c0 = tt * chunk; c0 < rows; c0 += threads * chunk) for (int i = c0; i < c0 + chunk; i += 4) tile(m, 4L * i * cols, 4L * cols, cols, x, y, i, 1); }
                            default -> throw new IllegalArgumentException(v);
                        }
                    });
                }
                for (Future<?> f : fs) f.get();
            }
            long dt = System.nanoTime() - t0;
            all[rep] = 4.0 * layers * rows * cols / dt;
        }
        java.util.Arrays.sort(all, reps / 4, reps);
        System.out.printf("%-7s chunk %d, %d threads: median %.1f GB/s, best %.1f (y[5]=%.4f)%n", v, chunk, threads, all[reps / 4 + (reps - reps / 4) / 2], all[reps - 1], y[5]);
        ex.shutdown();
    }

    static float row(MemorySegment w, long off, int cols, float[] x) {
        FloatVector s = FloatVector.zero(F);
        for (int c = 0; c < cols; c += L) s = FloatVector.fromMemorySegment(F, w, off + 4L * c, LE).fma(FloatVector.fromArray(F, x, c), s);
        return s.reduceLanes(VectorOperators.ADD);
    }

    // rows r0 + k + j*q, j < 4 (the engine's spaced tiles)
    static void spaced(MemorySegment w, int cols, float[] x, float[] y, int r0, int r1) {
        int q = (r1 - r0) / 4;
        for (int k = 0; k < q; k++) tile(w, 4L * (r0 + k) * cols, 4L * q * cols, cols, x, y, r0 + k, q);
    }

    static void tile(MemorySegment w, long off, long stride, int cols, float[] x, float[] y, int yo, int ystep) {
        long o0 = off, o1 = off + stride, o2 = o1 + stride, o3 = o2 + stride;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += L) {
            long b = 4L * c;
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = FloatVector.fromMemorySegment(F, w, o0 + b, LE).fma(xv, a0);
            a1 = FloatVector.fromMemorySegment(F, w, o1 + b, LE).fma(xv, a1);
            a2 = FloatVector.fromMemorySegment(F, w, o2 + b, LE).fma(xv, a2);
            a3 = FloatVector.fromMemorySegment(F, w, o3 + b, LE).fma(xv, a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + ystep] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2 * ystep] = a2.reduceLanes(VectorOperators.ADD);
        y[yo + 3 * ystep] = a3.reduceLanes(VectorOperators.ADD);
    }
}
