import dev.dsmoe.kernels.MemoryProbe;
import java.util.Arrays;
/**
 * The machine's read bandwidth as {@code bench kernels}' 4-stream probe measures it, alone
 * ({@code bench kernels --matvec} takes minutes): {@link MemoryProbe#readSum} over 4 arrays of
 * 256 MiB, each thread reading its slice of all four (4 streams a thread), median of 9 after 2
 * warm-up passes.
 *
 * <pre>
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector -Xmx3g -cp target/dsmoe4j.jar bench/MemoryReadProbe.java
 * </pre>
 */
public class MemoryReadProbe {
    public static void main(String[] a) {
        int n = 1 << 26; // 256 MiB per array
        float[][] arrs = new float[4][n];
        for (float[] x : arrs) Arrays.fill(x, 1f);
        double[] gbs = new double[9];
        for (int r = 0; r < 11; r++) {
            long t0 = System.nanoTime();
            double s = MemoryProbe.readSum(arrs);
            long t1 = System.nanoTime();
            if (r >= 2) gbs[r - 2] = 4.0 * n * 4 / (t1 - t0);
            if (s < 0) System.out.println(s);
        }
        Arrays.sort(gbs);
        System.out.printf("4-stream read: median %.1f GB/s (min %.1f, max %.1f)%n", gbs[4], gbs[0], gbs[8]);
    }
}
