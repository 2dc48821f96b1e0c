package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.assertClose;
import static dev.dsmoe.kernels.TestArrays.numericGradient;
import static dev.dsmoe.kernels.TestArrays.toDouble;
import static dev.dsmoe.kernels.TestArrays.uniform;

import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The router's forward against a double-precision reference, its backward against central differences of it. */
class RoutingTest {

    static final int N = 5, D = 7, H = 6, E = 4;

    /** S = softmax(router(in)) in double; {@code w0 == null} for a linear router. */
    static double[] reference(double[] in, double[] w0, double[] w2) {
        double[] feat = in;
        int width = D;
        if (w0 != null) {
            feat = new double[N * H];
            for (int t = 0; t < N; t++) {
                for (int h = 0; h < H; h++) {
                    double s = 0;
                    for (int c = 0; c < D; c++) s += in[t * D + c] * w0[h * D + c];
                    feat[t * H + h] = 0.5 * s * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (s + 0.044715 * s * s * s)));
                }
            }
            width = H;
        }
        double[] probs = new double[N * E];
        for (int t = 0; t < N; t++) {
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            double[] z = new double[E];
            for (int e = 0; e < E; e++) {
                for (int c = 0; c < width; c++) z[e] += feat[t * width + c] * w2[e * width + c];
                max = Math.max(max, z[e]);
            }
            for (int e = 0; e < E; e++) sum += Math.exp(z[e] - max);
            for (int e = 0; e < E; e++) probs[t * E + e] = Math.exp(z[e] - max) / sum;
        }
        return probs;
    }

    static double dot(double[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    @ParameterizedTest(name = "mlp router: {0}")
    @ValueSource(booleans = {false, true})
    void forwardMatchesTheReferenceAndBackwardMatchesFiniteDifferences(boolean mlp) {
        SplittableRandom r = new SplittableRandom(mlp ? 2 : 1);
        float[] in = uniform(r, N * D, 1), w0 = mlp ? uniform(r, H * D, 0.8) : null, w2 = uniform(r, E * (mlp ? H : D), 0.8);
        float[] upstream = uniform(r, N * E, 1); // L = Σ upstream ⊙ S
        int width = mlp ? H : D;
        F32Tensor hiddenW = mlp ? F32Tensor.of(w0, H, D) : null, outW = F32Tensor.of(w2, E, width);
        Routing.Buffers acts = buffers(mlp), grads = buffers(mlp);
        Matmul mm = Matmul.forTraining();
        F32Tensor inV = F32Tensor.of(in, N, D);
        Routing.forward(mm, hiddenW, outW, inV, N, acts);
        double[] din = toDouble(in), dw0 = mlp ? toDouble(w0) : null, dw2 = toDouble(w2);
        assertClose("probs", reference(din, dw0, dw2), acts.probs().array(), 1e-6, 1e-5);

        System.arraycopy(upstream, 0, grads.probs().array(), 0, N * E);
        F32Tensor dHiddenW = mlp ? F32Tensor.of(new float[H * D], H, D) : null, dOutW = F32Tensor.of(new float[E * width], E, width);
        F32Tensor dIn = F32Tensor.of(new float[N * D], N, D);
        Routing.backward(mm, hiddenW, outW, dHiddenW, dOutW, inV, N, acts, grads, dIn);
        double h = 1e-5;
        assertClose("dIn", numericGradient(x -> dot(reference(x, dw0, dw2), upstream), din, h), dIn.array(), 1e-6, 1e-4);
        assertClose("dOutW", numericGradient(x -> dot(reference(din, dw0, x), upstream), dw2, h), dOutW.array(), 1e-6, 1e-4);
        if (mlp) {
            assertClose("dHiddenW", numericGradient(x -> dot(reference(din, x, dw2), upstream), dw0, h), dHiddenW.array(),
                    1e-6, 1e-4);
        }
    }

    private static Routing.Buffers buffers(boolean mlp) {
        return new Routing.Buffers(mlp ? F32Tensor.of(new float[N * H], N, H) : null, mlp ? F32Tensor.of(new float[N * H], N, H) : null,
                F32Tensor.of(new float[N * E], N, E), F32Tensor.of(new float[N * E], N, E));
    }
}
