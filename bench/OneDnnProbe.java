import dev.dsmoe.kernels.*;
import java.lang.foreign.*;
import java.util.*;

/**
 * One inference product {@code y[m, n] (+)= x[m, k] · Wᵀ} through {@link Matmul#forward} of an
 * inference instance (oneDNN when it loads) on a native weight of the given format, single-threaded
 * ({@code threads 1}) or on the engine's pool: microseconds per call (median of 30, after {@code -Dwarmup} seconds of calls, default 3) and GFLOP/s.
 * Compares our wrapper (input conversion, chunking, output copy) with oneDNN's own kernel rate.
 *
 * <pre>
 *   ./mvnw -q package -DskipTests
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *       -cp 'target/dsmoe4j.jar:target/lib/*' bench/OneDnnProbe.java bf16 256 2048 128 acc 2
 * </pre>
 */
public class OneDnnProbe {
    public static void main(String[] a) {
        MatVec.DType dt = MatVec.DType.parse(a[0]);
        int m = Integer.parseInt(a[1]), n = Integer.parseInt(a[2]), k = Integer.parseInt(a[3]);
        boolean acc = a[4].equals("acc");
        Parallel.setThreads(Integer.parseInt(a[5]));
        System.out.println(OneDnn.describe());
        SplittableRandom rnd = new SplittableRandom(1);
        float[] w = new float[n * k], x = new float[m * k], y = new float[m * n];
        for (int i = 0; i < w.length; i++) w[i] = (float) rnd.nextDouble(-1, 1);
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextDouble(-1, 1);
        TensorView wv = dt.view(dt.write(Arena.ofShared(), w, n, k), 0, n, k);
        Matmul mm = Matmul.forInference();
        F32Tensor in = F32Tensor.of(x, m, k), out = F32Tensor.of(y, m, n);
        // warm-up by time, not by count: 10 calls left the wrapper's vector code interpreted (session 20:
        // 8.2 ms a call for m=72 n=2048 k=256 bf16 after 10, 0.25 ms after 3000)
        long warm = System.nanoTime() + (long) (Double.parseDouble(System.getProperty("warmup", "3")) * 1e9);
        while (System.nanoTime() < warm) mm.forward(out, in, m, wv, acc);
        long[] t = new long[Integer.getInteger("reps", 30)];
        for (int i = 0; i < t.length; i++) {
            long t0 = System.nanoTime();
            mm.forward(out, in, m, wv, acc);
            t[i] = System.nanoTime() - t0;
        }
        Arrays.sort(t);
        double us = t[t.length / 2] / 1e3;
        System.out.printf("%s m=%d n=%d k=%d %s threads=%s: %.1f us, %.0f GFLOP/s%n", dt, m, n, k, a[4], a[5], us, 2.0 * m * n * k / us / 1e3);
    }
}
