import dev.dsmoe.kernels.*;
import java.lang.foreign.*;
import java.util.*;

/**
 * Decode's output products of a mixture, the old way against {@link Matmul#pieceSums}: one token's
 * gated rows through {@code sel} of {@code experts} experts of {@code [2048 x cols]}, then summed
 * into its residual row. Old: {@code Matmul.segments} (a row per expert, each weight row its own
 * lane sum and store), then the scatter-add; new: one accumulator per output over all experts.
 * Weights of 24 layers (so they stream from memory), both ways alternating in one process, 10
 * rounds, GB/s of weights read. dsmoe-1b's shapes: MoA output {@code 16 128 16}, MLP down
 * {@code 32 256 9}; {@code 1 2048 1} is one plain matrix. {@code -Dlayers=N} (24), {@code -Drows=R}
 * (2048, an expert's output rows) and {@code -Drounds=K} (12; the first two are not printed) change
 * the sizes: {@code -Dlayers=1 -Drows=32} keeps the weights in L2.
 *
 * <pre>
 *   ./mvnw -q package -DskipTests
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *       -cp target/dsmoe4j.jar bench/PieceSumsProbe.java bf16 16 128 16
 * </pre>
 */
public class PieceSumsProbe {
    public static void main(String[] a) {
        MatVec.DType dt = MatVec.DType.parse(a[0]);
        int experts = Integer.parseInt(a[1]), rows = Integer.getInteger("rows", 2048), cols = Integer.parseInt(a[2]), sel = Integer.parseInt(a[3]);
        int layers = Integer.getInteger("layers", 24);
        Arena arena = Arena.ofShared();
        TensorView[] w = new TensorView[layers];
        SplittableRandom rnd = new SplittableRandom(1);
        float[] src = new float[experts * rows * cols];
        for (int i = 0; i < src.length; i++) src[i] = (float) rnd.nextDouble(-1, 1);
        for (int l = 0; l < layers; l++) {
            MemorySegment seg = dt.write(arena, src, experts * rows, cols);
            w[l] = dt.view(seg, 0, experts * rows, cols).stackedExperts(experts);
        }
        float[] x = new float[sel * cols];
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextDouble(-1, 1);
        float[] out = new float[sel * rows], y = new float[rows];
        int[] start = new int[sel], count = new int[sel], ex = new int[sel], slot = new int[sel], outRow = {0};
        for (int i = 0; i < sel; i++) { start[i] = i; count[i] = 1; ex[i] = i * experts / sel; slot[i] = 0; }
        Matmul mm = Matmul.matVecOnly();
        F32Tensor in = F32Tensor.of(x, sel, cols), o = F32Tensor.of(out, sel, rows), yv = F32Tensor.of(y, 1, rows);
        double bytes = (double) layers * sel * rows * cols * dt.bytesPerWeight;
        for (int round = 0; round < Integer.getInteger("rounds", 12); round++) {
            long t0 = System.nanoTime();
            for (int l = 0; l < layers; l++) {
                mm.segments(o, in, w[l], sel, start, count, ex);
                for (int i = 0; i < sel; i++) for (int r = 0; r < rows; r++) y[r] += out[i * rows + r];
            }
            long t1 = System.nanoTime();
            for (int l = 0; l < layers; l++) mm.pieceSums(yv, in, w[l], sel, start, ex, slot, 1, outRow);
            long t2 = System.nanoTime();
            if (round >= 2) System.out.printf("%s segments+add %.2f ms %.1f GB/s | pieceSums %.2f ms %.1f GB/s | ratio %.2f%n", dt,
                    (t1 - t0) / 1e6, bytes / (t1 - t0), (t2 - t1) / 1e6, bytes / (t2 - t1), (double) (t1 - t0) / (t2 - t1));
        }
    }
}
