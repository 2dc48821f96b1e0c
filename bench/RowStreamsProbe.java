import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.kernels.Q8Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Which 4 weight rows a mat-vec tile should take: 4 adjacent rows (four short streams per tile)
 * or 4 rows a quarter of the thread's range apart (four long sequential streams). One Q8_0
 * mat-vec (one input row) over 1B shapes, two threads, both groupings alternating in one process,
 * the same kernel (widen a lane block, times its block's scale, FMA) for both. Median of 11.
 *
 * <pre>
 *   ./mvnw -q -o package -DskipTests
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector -cp target/dsmoe4j.jar bench/RowStreamsProbe.java
 * </pre>
 */
public class RowStreamsProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(F.vectorBitSize() / 4));
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfFloat SCALE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    static FloatVector widen(MemorySegment w, long o) {
        return (FloatVector) ByteVector.fromMemorySegment(B, w, o, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    /** Rows at byte offsets o0..o3 (scales at s0..s3) against x, into y[y0..y3]. */
    static void tile(MemorySegment w, long o0, long o1, long o2, long o3, long s0, long s1, long s2, long s3, int cols,
                     float[] x, float[] y, int y0, int y1, int y2, int y3) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += L) {
            long sb = 4L * (c / Q8Tensor.BLOCK);
            FloatVector xv = FloatVector.fromArray(F, x, c);
            a0 = xv.fma(widen(w, o0 + c).mul(w.get(SCALE, s0 + sb)), a0);
            a1 = xv.fma(widen(w, o1 + c).mul(w.get(SCALE, s1 + sb)), a1);
            a2 = xv.fma(widen(w, o2 + c).mul(w.get(SCALE, s2 + sb)), a2);
            a3 = xv.fma(widen(w, o3 + c).mul(w.get(SCALE, s3 + sb)), a3);
        }
        y[y0] = a0.reduceLanes(VectorOperators.ADD);
        y[y1] = a1.reduceLanes(VectorOperators.ADD);
        y[y2] = a2.reduceLanes(VectorOperators.ADD);
        y[y3] = a3.reduceLanes(VectorOperators.ADD);
    }

    public static void main(String[] args) {
        if (F.vectorBitSize() < 256) throw new IllegalStateException("needs 256-bit vectors or wider");
        Parallel.setThreads(2);
        int[][] shapes = {{2048, 2048}, {8192, 2048}, {32000, 2048}, {2048, 8192}, {256, 2048}, {2048, 256}, {2048, 128}};
        Random rnd = new Random(1);
        Arena arena = Arena.ofShared();
        System.out.println("| weight [rows x cols] | copies | adjacent rows µs | GB/s | spaced rows µs | GB/s | spaced / adjacent |");
        System.out.println("|---|---:|---:|---:|---:|---:|---:|");
        for (int[] s : shapes) {
            int rows = s[0], cols = s[1];
            int copies = Math.max(1, (int) (600L * 1024 * 1024 / ((long) rows * cols))); // well beyond the caches
            float[] wf = new float[rows * cols];
            for (int i = 0; i < wf.length; i++) wf[i] = (float) rnd.nextGaussian();
            Q8Tensor[] q = new Q8Tensor[copies];
            for (int i = 0; i < copies; i++) q[i] = Q8Tensor.quantize(arena, wf, rows, cols);
            float[] x = new float[cols], y = new float[rows];
            for (int i = 0; i < cols; i++) x[i] = (float) rnd.nextGaussian();
            double[][] t = new double[2][11];
            for (int rep = 0; rep < 5 + 11; rep++) {
                for (int mode = 0; mode < 2; mode++) {
                    boolean spaced = mode == 1;
                    long t0 = System.nanoTime();
                    for (Q8Tensor qq : q) {
                        MemorySegment w = qq.segment();
                        long wo = qq.byteOffset(), so = qq.scaleByteOffset(), sRow = 4L * qq.blocksPerRow();
                        Parallel.forRange(2, 1, (c0, c1) -> {
                            int r0 = rows * c0 / 2, n = rows * c1 / 2 - r0, quarter = n / 4;
                            for (int i = 0; i < quarter; i++) {
                                int ra = spaced ? r0 + i : r0 + 4 * i, step = spaced ? quarter : 1;
                                int rb = ra + step, rc = rb + step, rd = rc + step;
                                tile(w, wo + (long) ra * cols, wo + (long) rb * cols, wo + (long) rc * cols, wo + (long) rd * cols,
                                        so + ra * sRow, so + rb * sRow, so + rc * sRow, so + rd * sRow, cols, x, y, ra, rb, rc, rd);
                            }
                        });
                    }
                    long t1 = System.nanoTime();
                    if (rep >= 5) t[mode][rep - 5] = (t1 - t0) / 1e9 / copies;
                }
            }
            Arrays.sort(t[0]);
            Arrays.sort(t[1]);
            double a = t[0][5], b = t[1][5], bytes = Q8Tensor.bytes(rows, cols);
            System.out.printf("| [%d x %d] | %d | %.1f | %.1f | %.1f | %.1f | %.2fx |%n", rows, cols, copies, a * 1e6, bytes / a / 1e9,
                    b * 1e6, bytes / b / 1e9, a / b);
        }
    }
}
