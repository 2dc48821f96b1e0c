import dev.dsmoe.kernels.*;
import java.util.*;

/**
 * {@link CachedAttention#forward} at dsmoe-1b's attention shapes (32 query heads, 2 KV heads of
 * 64, cache blocks of 16 positions): {@code rows} query rows at positions {@code pos, pos+1, ...}
 * against the cache, 24 layers' worth of calls per round (256 rows' worth when rows is 1);
 * microseconds per call and per row and layer. {@code 1 288}: one decode step late in the
 * benchmark's decode; {@code 256 0}: a prefill chunk of 256.
 *
 * <pre>
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector -cp target/dsmoe4j.jar bench/CachedAttentionProbe.java 1 288
 * </pre>
 */
public class CachedAttentionProbe {
    public static void main(String[] a) {
        int rows = Integer.parseInt(a[0]), pos = Integer.parseInt(a[1]);
        int heads = 32, nKv = 2, D = 64, bs = 16, kvStride = nKv * D;
        int blocks = (pos + rows + bs - 1) / bs;
        SplittableRandom rnd = new SplittableRandom(1);
        float[][] table = new float[blocks][];
        for (int b = 0; b < blocks; b++) { table[b] = new float[2 * bs * kvStride]; for (int i = 0; i < table[b].length; i++) table[b][i] = (float) rnd.nextDouble(-1, 1); }
        float[][][] tables = new float[rows][][];
        Arrays.fill(tables, table);
        int[] kvHeadOf = new int[heads];
        for (int h = 0; h < heads; h++) kvHeadOf[h] = h * nKv / heads;
        int[] positions = new int[rows];
        for (int r = 0; r < rows; r++) positions[r] = pos + r;
        float[] q = new float[rows * heads * D], out = new float[rows * heads * D];
        for (int i = 0; i < q.length; i++) q[i] = (float) rnd.nextDouble(-1, 1);
        for (int round = 0; round < 10; round++) {
            long t0 = System.nanoTime();
            int reps = 24 * Math.max(1, 256 / rows);
            for (int l = 0; l < reps; l++)
                CachedAttention.forward(q, 0, heads * D, rows, heads, kvHeadOf, tables, 0, bs * kvStride, bs, kvStride, D, positions, 0, out, 0, heads * D);
            long t1 = System.nanoTime();
            if (round >= 3) System.out.printf("rows %d pos %d: %.1f us per layer-call, %.2f us per token-layer%n", rows, pos, (t1 - t0) / 1e3 / reps, (t1 - t0) / 1e3 / reps / rows);
        }
    }
}
