import dev.dsmoe.kernels.*;
import java.util.*;

/**
 * The GEMM rate of the inference backend on one thread, for a prompt chunk's expert shapes and
 * dense-1b's (BENCHMARKS.md, session 17): {@code C[m, n] = A[m, k] · B[n, k]ᵀ} as the engine calls
 * it (rows of tokens times a weight's rows), B cycling through 256 MiB of distinct matrices so that
 * each call reads its weight from memory, as a prefill does. A 256-token chunk gives each of
 * dsmoe-1b's 32 MLP experts about 72 rows (top-9): 72 x 256 x 2048 is an expert's input product,
 * 72 x 2048 x 256 its output product. Prints the median and best GFLOP/s after one pass over the pool.
 *
 * <pre>
 *   ./mvnw -q package -DskipTests
 *   env -u OPENBLAS_CORETYPE $JAVA_HOME/bin/java -Xmx8g --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *       -cp target/dsmoe4j.jar bench/ExpertGemmProbe.java
 * </pre>
 */
public class ExpertGemmProbe {
    public static void main(String[] a) {
        Parallel.setThreads(1);
        Gemm g = Kernels.gemm();
        System.out.println("backend " + g.name() + ", one thread");
        int[][] shapes = {{72, 256, 2048}, {72, 2048, 256}, {144, 256, 2048}, {256, 4096, 2048}, {256, 2048, 4096}, {256, 128, 2048}, {256, 2048, 2048}};
        SplittableRandom r = new SplittableRandom(1);
        for (int[] s : shapes) {
            int m = s[0], n = s[1], k = s[2];
            int pool = Math.max(1, (int) (256L * 1024 * 1024 / (4L * n * k)));
            float[][] b = new float[pool][n * k];
            for (float[] w : b) for (int i = 0; i < w.length; i += 97) w[i] = (float) r.nextDouble();
            float[] x = new float[m * k], c = new float[m * n];
            for (int i = 0; i < x.length; i++) x[i] = (float) r.nextDouble();
            double flop = 2.0 * m * n * k;
            long[] ts = new long[5 * pool];
            for (int rep = 0; rep < ts.length; rep++) {
                long t0 = System.nanoTime();
                g.sgemm(false, true, m, n, k, 1f, x, 0, k, b[rep % pool], 0, k, 0f, c, 0, n);
                ts[rep] = System.nanoTime() - t0;
            }
            long[] v = Arrays.copyOfRange(ts, pool, ts.length); // the first pass over the pool warms the JIT
            Arrays.sort(v);
            System.out.printf("m %4d n %4d k %4d (%d weights in the pool): median %.1f GFLOP/s, best %.1f%n", m, n, k, pool,
                    flop / v[v.length / 2], flop / v[0]);
        }
    }
}
