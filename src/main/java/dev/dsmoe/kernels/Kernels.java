package dev.dsmoe.kernels;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.Supplier;

/**
 * Chooses the GEMM backend once at start-up: with {@link Backend#AUTO}, the pure-Java Vector API
 * backend when OpenBLAS does not load (one line on stderr says so), else OpenBLAS, or whichever
 * the installed {@link #chooseAutoWith chooser} names (the CLI's: the faster of the two on this
 * machine, measured once by {@link #measure}). {@code --kernels java|blas} forces a choice;
 * {@code DSMOE_KERNELS} does the same from the environment.
 */
public final class Kernels {

    /** Which GEMM backend to use. */
    public enum Backend { AUTO, BLAS, JAVA }

    private static volatile Gemm gemm;
    private static volatile String fallbackReason;
    private static volatile Supplier<Backend> autoChooser;

    /**
     * How {@link Backend#AUTO} picks between the two backends once OpenBLAS has loaded: the
     * supplier returns {@link Backend#BLAS} or {@link Backend#JAVA}; null (the default) keeps
     * OpenBLAS. Takes effect at the next selection of AUTO.
     */
    public static void chooseAutoWith(Supplier<Backend> chooser) {
        autoChooser = chooser;
    }

    /** GFLOP/s of each backend on {@link #measure}'s products. */
    public record Speed(double blasGflops, double javaGflops) {}

    /**
     * Times both backends on the products of a training step (a 1024-token batch through a
     * [1024 x 256] up and a [256 x 1024] down projection: forward A·B, forward through an
     * [out, in] weight A·Bᵀ, weight gradient Aᵀ·B), on {@link Parallel}'s threads, after warming
     * both up for 0.8 s (the JIT compiling the Java kernels, OpenBLAS's first calls): the medians
     * of 7 alternating rounds, about 1.2 s in all. OpenBLAS must load.
     */
    public static Speed measure() {
        Gemm[] both = {BlasGemm.load(), new JavaGemm()};
        int t = 1024, d = 256, f = 1024;
        SplittableRandom r = new SplittableRandom(1);
        float[] x = new float[t * d], w = new float[f * d], h = new float[t * f], dy = new float[t * f];
        for (float[] a : new float[][] {x, w, h, dy}) for (int i = 0; i < a.length; i++) a[i] = (float) r.nextDouble(-1, 1);
        float[] y = new float[t * f], dw = new float[f * d], down = new float[t * d];
        Runnable[] round = new Runnable[2];
        for (int b = 0; b < 2; b++) {
            Gemm g = both[b];
            round[b] = () -> {
                g.matmulTransB(x, w, y, t, f, d, false);   // up through an [out, in] weight
                g.matmul(h, w, down, t, d, f, false);      // down: [t, f] x [f, d]
                g.matmul(x, dw, y, t, f, d, false);        // up as A·B
                g.matmulTransA(dy, x, dw, f, d, t, false); // weight gradient over the tokens
            };
        }
        double flops = 4.0 * 2 * t * d * f;
        for (long end = System.nanoTime() + 800_000_000L; System.nanoTime() < end; ) {
            round[0].run();
            round[1].run();
        }
        double[][] sec = new double[2][7];
        for (int i = 0; i < 7; i++) {
            for (int b = 0; b < 2; b++) {
                long t0 = System.nanoTime();
                round[b].run();
                sec[b][i] = (System.nanoTime() - t0) / 1e9;
            }
        }
        Arrays.sort(sec[0]);
        Arrays.sort(sec[1]);
        return new Speed(flops / sec[0][3] / 1e9, flops / sec[1][3] / 1e9);
    }

    private Kernels() {}

    /** The selected backend, choosing {@link Backend#AUTO} (or DSMOE_KERNELS) on first use. */
    public static Gemm gemm() {
        Gemm g = gemm;
        if (g == null) {
            synchronized (Kernels.class) {
                if (gemm == null) {
                    String env = System.getenv("DSMOE_KERNELS");
                    select(env == null || env.isBlank() ? Backend.AUTO : parse(env));
                }
                g = gemm;
            }
        }
        return g;
    }

    /** Parses {@code auto|blas|java}; IllegalArgumentException names the accepted values. */
    public static Backend parse(String s) {
        return switch (s.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "auto" -> Backend.AUTO;
            case "blas", "openblas" -> Backend.BLAS;
            case "java" -> Backend.JAVA;
            default -> throw new IllegalArgumentException(
                    "unknown kernels backend '" + s + "': use auto, blas or java");
        };
    }

    /**
     * Selects the backend. BLAS that cannot load fails for {@link Backend#BLAS} and falls back to
     * Java with one stderr line for {@link Backend#AUTO}.
     */
    public static synchronized Gemm select(Backend backend) {
        switch (backend) {
            case JAVA -> gemm = new JavaGemm();
            case BLAS -> gemm = BlasGemm.load();
            case AUTO -> {
                try {
                    Gemm blas = BlasGemm.load();
                    Supplier<Backend> chooser = autoChooser;
                    gemm = chooser != null && chooser.get() == Backend.JAVA ? new JavaGemm() : blas;
                } catch (UnsupportedOperationException | LinkageError e) {
                    fallbackReason = e.getMessage();
                    System.err.println("dsmoe: OpenBLAS unavailable (" + e.getMessage()
                            + "); using the pure-Java kernels");
                    gemm = new JavaGemm();
                }
            }
        }
        return gemm;
    }

    /** Why AUTO fell back to Java, or null. */
    public static String fallbackReason() {
        return fallbackReason;
    }
}
