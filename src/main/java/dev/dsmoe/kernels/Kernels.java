package dev.dsmoe.kernels;

/**
 * Chooses the GEMM backend once at start-up: OpenBLAS when its native library loads, else the
 * pure-Java Vector API backend (with one line on stderr saying so). {@code --kernels java|blas}
 * forces a choice; {@code DSMOE_KERNELS} does the same from the environment.
 */
public final class Kernels {

    /** Which GEMM backend to use. */
    public enum Backend { AUTO, BLAS, JAVA }

    private static volatile Gemm gemm;
    private static volatile String fallbackReason;

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
                    gemm = BlasGemm.load();
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
