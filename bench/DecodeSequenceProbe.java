import dev.dsmoe.kernels.*;
import java.lang.foreign.*;
import java.util.*;

/**
 * A dense-1b decode step's weight products and nothing else: for each of 24 layers the query
 * [2048 x 2048], key and value [128 x 2048], output [2048 x 2048], MLP input [8192 x 2048] and
 * output [2048 x 8192] products of one input row, then the head [32000 x 2048], through the
 * engine's mat-vec ({@link Matmul#matVecOnly}), each weight in its own 64-byte-aligned native
 * allocation as a loaded model has them. GB/s of weights a "token" (the median and best of the
 * rounds after the first quarter), to set beside {@code bench infer}'s decode GB/s (what the rest of
 * the engine costs) and {@code MatVecRateProbe}'s (what one shape streams). {@code big}: only the
 * [2048 x 2048], [8192 x 2048], [2048 x 8192] and head products (without the K/V ones).
 *
 * <pre>
 *   ./mvnw -q package -DskipTests
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *       -cp target/dsmoe4j.jar bench/DecodeSequenceProbe.java bf16 all 2
 * </pre>
 */
public class DecodeSequenceProbe {
    public static void main(String[] a) {
        MatVec.DType dt = MatVec.DType.parse(a[0]);
        boolean all = !a[1].equals("big");
        Parallel.setThreads(Integer.parseInt(a[2]));
        int layers = Integer.getInteger("layers", 24), rounds = Integer.getInteger("rounds", 40);
        int[][] layerShapes = all ? new int[][] {{2048, 2048}, {128, 2048}, {128, 2048}, {2048, 2048}, {8192, 2048}, {2048, 8192}}
                : new int[][] {{2048, 2048}, {2048, 2048}, {8192, 2048}, {2048, 8192}};
        List<TensorView> seq = new ArrayList<>();
        Arena arena = Arena.ofShared();
        SplittableRandom rnd = new SplittableRandom(1);
        double bytes = 0;
        for (int l = 0; l <= layers; l++) {
            int[][] shapes = l < layers ? layerShapes : new int[][] {{32000, 2048}};
            for (int[] s : shapes) {
                float[] src = new float[s[0] * s[1]];
                for (int i = 0; i < src.length; i++) src[i] = (float) rnd.nextDouble(-0.1, 0.1);
                seq.add(dt.view(dt.write(arena, src, s[0], s[1]), 0, s[0], s[1]));
                bytes += (double) s[0] * s[1] * dt.bytesPerWeight;
            }
        }
        float[] x = new float[8192], y = new float[32000];
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextDouble(-1, 1);
        Matmul mm = Matmul.matVecOnly();
        int n = seq.size();
        F32Tensor[] ins = new F32Tensor[n], outs = new F32Tensor[n]; // built once: the timed loop allocates nothing
        for (int i = 0; i < n; i++) {
            ins[i] = F32Tensor.of(x, 1, seq.get(i).cols());
            outs[i] = F32Tensor.of(y, 1, seq.get(i).rows());
        }
        double[] gbs = new double[rounds];
        for (int r = 0; r < rounds; r++) {
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) mm.forward(outs[i], ins[i], 1, seq.get(i), false);
            gbs[r] = bytes / (System.nanoTime() - t0);
        }
        double[] tail = Arrays.copyOfRange(gbs, rounds / 4, rounds);
        Arrays.sort(tail);
        System.out.printf("%s %s, %d products of %.0f MB a token, %d threads: median %.1f GB/s, best %.1f (%.1f tok/s)%n", dt,
                all ? "all" : "big", seq.size(), bytes / 1e6, Parallel.threads(), tail[tail.length / 2], tail[tail.length - 1],
                tail[tail.length / 2] * 1e9 / bytes);
    }
}
