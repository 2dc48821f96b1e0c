package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.SplittableRandom;

/** Random inputs, float/double conversion and tolerance checks shared by the kernel tests. */
final class TestArrays {

    private TestArrays() {}

    /** Uniform values in {@code [-scale, scale)}. */
    static float[] uniform(SplittableRandom rnd, int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) ((rnd.nextDouble() * 2 - 1) * scale);
        return a;
    }

    static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    /**
     * Asserts {@code |actual[aOff+i] - expected[i]| <= atol + rtol*|expected[i]|} for every i,
     * naming the first failing index.
     */
    static void assertClose(String what, double[] expected, float[] actual, int aOff, double atol, double rtol) {
        for (int i = 0; i < expected.length; i++) {
            double e = expected[i], a = actual[aOff + i];
            if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
                fail(what + ": index " + i + " expected " + e + " but was " + a
                        + " (|diff| " + Math.abs(a - e) + ", atol " + atol + ", rtol " + rtol + ")");
            }
        }
    }

    static void assertClose(String what, double[] expected, float[] actual, double atol, double rtol) {
        assertClose(what, expected, actual, 0, atol, rtol);
    }

    /** Runs body with {@code n} threads, restoring the previous count afterwards. */
    static void withThreads(int n, Runnable body) {
        int old = Parallel.threads();
        Parallel.setThreads(n);
        try {
            body.run();
        } finally {
            Parallel.setThreads(old);
        }
    }

    /** A function of a double vector, for finite differences. */
    interface Fn {
        double apply(double[] x);
    }

    /** Central finite-difference gradient of f at x (x is restored), step h. */
    static double[] numericGradient(Fn f, double[] x, double h) {
        double[] grad = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            double old = x[i];
            x[i] = old + h;
            double fp = f.apply(x);
            x[i] = old - h;
            double fm = f.apply(x);
            x[i] = old;
            grad[i] = (fp - fm) / (2 * h);
        }
        return grad;
    }
}
