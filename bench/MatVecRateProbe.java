import dev.dsmoe.kernels.*;
import java.lang.foreign.*;
import java.util.*;

/**
 * The decode mat-vec's rate per weight format, from memory or from cache: {@code -Dinputs} input
 * rows (default 1) through {@code layers} weights of {@code [rows x cols]} ({@code -Dcols}, default
 * 2048; {@link Matmul#forward} of a mat-vec instance, the engine's kernels), on {@code threads}
 * threads, GB/s of weights read: every 50th of {@code -Drounds} rounds (default 400), then the
 * best round after the first quarter (the host's noise only ever slows a round down).
 * The defaults (8 x 8192 rows, 128 MiB of fp32) stream from memory; {@code -Drows=256 -Dlayers=1}
 * keeps the weight in L2, which leaves the kernel's own arithmetic as the limit (session 11:
 * q8_0 15.8 GB/s on one thread, fp32 39.9, bf16 53.9).
 *
 * <pre>
 *   ./mvnw -q package -DskipTests
 *   $JAVA_HOME/bin/java -Drows=256 -Dlayers=1 --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *       -cp target/dsmoe4j.jar bench/MatVecRateProbe.java q8_0 1
 * </pre>
 */
public class MatVecRateProbe {
    public static void main(String[] a) {
        MatVec.DType dt = MatVec.DType.parse(a[0]);
        Parallel.setThreads(Integer.parseInt(a[1]));
        int rows = Integer.getInteger("rows", 8192), cols = Integer.getInteger("cols", 2048), layers = Integer.getInteger("layers", 8);
        SplittableRandom rnd = new SplittableRandom(1);
        float[] src = new float[rows * cols];
        for (int i = 0; i < src.length; i++) src[i] = (float) rnd.nextDouble(-1, 1);
        Arena arena = Arena.ofShared();
        TensorView[] w = new TensorView[layers];
        for (int l = 0; l < layers; l++) w[l] = dt.view(dt.write(arena, src, rows, cols), 0, rows, cols);
        int m = Integer.getInteger("inputs", 1);
        float[] x = new float[m * cols], y = new float[m * rows];
        for (int i = 0; i < m * cols; i++) x[i] = (float) rnd.nextDouble(-1, 1);
        Matmul mm = Matmul.matVecOnly();
        F32Tensor in = F32Tensor.of(x, m, cols), out = F32Tensor.of(y, m, rows);
        double bytes = (double) layers * rows * cols * dt.bytesPerWeight;
        int rounds = Integer.getInteger("rounds", 400);
        long best = Long.MAX_VALUE;
        for (int round = 0; round < rounds; round++) {
            long t0 = System.nanoTime();
            for (int l = 0; l < layers; l++) mm.forward(out, in, m, w[l], false);
            long t1 = System.nanoTime();
            if (round >= rounds / 4) best = Math.min(best, t1 - t0); // the first quarter warms the JIT
            if (round % 50 == 49) System.out.printf("%s %d x %d x %d, %s threads: %.1f GB/s%n", dt, layers, rows, cols, a[1], bytes / (t1 - t0));
        }
        System.out.printf("%s %d x %d x %d, %s threads: best of the last %d rounds %.1f GB/s%n", dt, layers, rows, cols, a[1],
                rounds - rounds / 4, bytes / best);
    }
}
