import dev.dsmoe.kernels.*;
import java.lang.foreign.*;
import java.util.*;

/**
 * Does a oneDNN product slow the mat-vec that runs after it? Times the q8_0 mat-vec of 16 input
 * rows against an [8192 x 2048] weight (batched decode's kernel), then runs one oneDNN product
 * (64 rows through a bf16 [2048 x 2048] weight), then times the mat-vec again; median µs of 40 each.
 *
 * <pre>
 *   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *       -cp 'target/dsmoe4j.jar:target/lib/*' bench/OneDnnAfterProbe.java
 * </pre>
 */
public class OneDnnAfterProbe {
    static double time(Matmul mm, F32Tensor out, F32Tensor in, TensorView w) {
        long[] t = new long[40];
        for (int i = 0; i < t.length; i++) {
            long t0 = System.nanoTime();
            mm.forward(out, in, 16, w, false);
            t[i] = System.nanoTime() - t0;
        }
        Arrays.sort(t);
        return t[t.length / 2] / 1e3;
    }

    public static void main(String[] a) {
        System.out.println(OneDnn.describe());
        SplittableRandom r = new SplittableRandom(1);
        float[] w = new float[8192 * 2048], w2 = new float[2048 * 2048], x = new float[64 * 2048];
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextDouble(-1, 1);
        for (int i = 0; i < w2.length; i++) w2[i] = (float) r.nextDouble(-1, 1);
        for (int i = 0; i < x.length; i++) x[i] = (float) r.nextDouble(-1, 1);
        TensorView q8 = MatVec.DType.Q8_0.view(MatVec.DType.Q8_0.write(Arena.ofShared(), w, 8192, 2048), 0, 8192, 2048);
        TensorView bf = MatVec.DType.BF16.view(MatVec.DType.BF16.write(Arena.ofShared(), w2, 2048, 2048), 0, 2048, 2048);
        Matmul vec = Matmul.matVecOnly(), gemm = Matmul.forInference();
        F32Tensor in = F32Tensor.of(x, 64, 2048), out = F32Tensor.of(new float[64 * 8192], 64, 8192);
        for (int i = 0; i < 200; i++) vec.forward(out, in, 16, q8, false);
        for (int round = 0; round < 4; round++) {
            double before = time(vec, out, in, q8);
            gemm.forward(F32Tensor.of(new float[64 * 2048], 64, 2048), in, 64, bf, false);
            double after = time(vec, out, in, q8);
            System.out.printf("round %d: mat-vec %.0f us before, %.0f us after one oneDNN product%n", round, before, after);
        }
    }
}
