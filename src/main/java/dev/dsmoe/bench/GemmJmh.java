package dev.dsmoe.bench;

import dev.dsmoe.kernels.BlasGemm;
import dev.dsmoe.kernels.Gemm;
import dev.dsmoe.kernels.JavaGemm;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * JMH benchmark of {@code C[M,N] = A[M,K]·B[K,N]} on the training shapes, both backends.
 * Run with {@code ./dsmoe bench kernels --jmh}. GFLOP/s = 2·M·K·N / (time per op).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class GemmJmh {

    @Param({"blas", "java"})
    public String backend;

    /** M x K x N. */
    @Param({"2048x256x1024", "2048x1024x256", "2048x256x8192"})
    public String shape;

    private Gemm gemm;
    private float[] a, b, c;
    private int m, k, n;

    @Setup
    public void setup() {
        String[] p = shape.split("x");
        m = Integer.parseInt(p[0]);
        k = Integer.parseInt(p[1]);
        n = Integer.parseInt(p[2]);
        gemm = backend.equals("blas") ? BlasGemm.load() : new JavaGemm();
        SplittableRandom r = new SplittableRandom(1);
        a = new float[m * k];
        b = new float[k * n];
        c = new float[m * n];
        for (int i = 0; i < a.length; i++) a[i] = (float) r.nextDouble();
        for (int i = 0; i < b.length; i++) b[i] = (float) r.nextDouble();
    }

    @Benchmark
    public float[] sgemm() {
        gemm.matmul(a, b, c, m, n, k, false);
        return c;
    }
}
