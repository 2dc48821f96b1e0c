package dev.dsmoe.kernels;

import static dev.dsmoe.kernels.TestArrays.assertClose;
import static dev.dsmoe.kernels.TestArrays.numericGradient;
import static dev.dsmoe.kernels.TestArrays.toDouble;
import static dev.dsmoe.kernels.TestArrays.uniform;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Dense gating, the gated scatter and the gather's backward against double references and central differences. */
class GatingTest {

    static double dot(double[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    @Test
    void denseGatingAndItsBackward() {
        int n = 3, e = 4, w = 5;
        SplittableRandom r = new SplittableRandom(1);
        float[] src = uniform(r, n * e * w, 1), gates = uniform(r, n * e, 1), up = uniform(r, n * e * w, 1);
        F32Tensor srcV = F32Tensor.of(src, n, e * w).expertColumns(e), gatesV = F32Tensor.of(gates, n, e);
        F32Tensor dst = F32Tensor.of(new float[n * e * w], n, e * w).expertColumns(e);
        Gating.forward(srcV, gatesV, dst, n);
        double[] ds = toDouble(src), dg = toDouble(gates);
        assertClose("dst", gated(ds, dg, e, w), dst.array(), 0, 1e-7);
        float[] dGated = up.clone(), dGates = new float[n * e];
        Gating.backward(F32Tensor.of(dGated, n, e * w), srcV, gatesV, F32Tensor.of(dGates, n, e), n);
        double h = 1e-5;
        assertClose("dSrc", numericGradient(x -> dot(gated(x, dg, e, w), up), ds, h), dGated, 1e-6, 1e-4);
        assertClose("dGates", numericGradient(x -> dot(gated(ds, x, e, w), up), dg, h), dGates, 1e-6, 1e-4);
    }

    private static double[] gated(double[] src, double[] gates, int e, int w) {
        double[] y = new double[src.length];
        for (int i = 0; i < y.length; i++) y[i] = gates[i / w] * src[i];
        return y;
    }

    @Test
    void gatedScatterGatherAndTheirBackward() {
        int n = 4, k = 2, e = 3, d = 6;
        int[] chosen = {0, 2, 1, -1, 2, 1, 0, 1};
        SplittableRandom r = new SplittableRandom(2);
        float[] gates = uniform(r, n * k, 1), x0 = uniform(r, n * d, 1), up = uniform(r, n * d, 1);
        ExpertGroups groups = new ExpertGroups(e, n * k);
        groups.group(chosen, n, k);
        int rows = groups.rows();
        assertEquals(7, rows);
        int[] rowOfSlot = new int[n * k];
        groups.rowsOfSlots(rowOfSlot);
        float[] out = uniform(r, rows * d, 1);

        float[] dst = x0.clone();
        Gating.scatter(F32Tensor.of(out, rows, d), rowOfSlot, chosen, gates, n, k, F32Tensor.of(dst, n, d));
        double[] dOut = toDouble(out), dGatesIn = toDouble(gates);
        assertClose("scatter", scattered(toDouble(x0), dOut, dGatesIn, chosen, rowOfSlot, k, d), dst, 1e-6, 1e-6);

        float[] dRows = new float[rows * d], dGates = new float[n * e];
        java.util.Arrays.fill(dGates, 7f); // overwritten: unselected experts get zero
        Gating.scatterBackward(F32Tensor.of(up, n, d), F32Tensor.of(out, rows, d), rowOfSlot, chosen, gates, n, k,
                F32Tensor.of(dRows, rows, d), F32Tensor.of(dGates, n, e));
        double h = 1e-5;
        double[] x0d = toDouble(x0);
        assertClose("dRows", numericGradient(x -> dot(scattered(x0d, x, dGatesIn, chosen, rowOfSlot, k, d), up), dOut, h),
                dRows, 1e-6, 1e-4);
        double[] perSlot = numericGradient(x -> dot(scattered(x0d, dOut, x, chosen, rowOfSlot, k, d), up), dGatesIn, h);
        double[] expected = new double[n * e];
        for (int s = 0; s < n * k; s++) if (chosen[s] >= 0) expected[(s / k) * e + chosen[s]] = perSlot[s];
        assertClose("dGates", expected, dGates, 1e-6, 1e-4);

        // the gather's backward: in[r] = x[token(r)], so dX[t] sums the rows of t's slots
        float[] gathered = new float[rows * d], dRowsIn = uniform(r, rows * d, 1), dX = uniform(r, n * d, 1);
        groups.gather(x0, d, gathered);
        Gating.gatherBackward(F32Tensor.of(dRowsIn, rows, d), rowOfSlot, chosen, n, k, F32Tensor.of(dX, n, d));
        double[] ref = new double[n * d];
        for (int row = 0; row < rows; row++) {
            for (int i = 0; i < d; i++) {
                assertEquals(x0[groups.token(row) * d + i], gathered[row * d + i]);
                ref[groups.token(row) * d + i] += dRowsIn[row * d + i];
            }
        }
        assertClose("dX", ref, dX, 1e-6, 1e-6);
    }

    private static double[] scattered(double[] x0, double[] out, double[] gates, int[] chosen, int[] rowOfSlot, int k, int d) {
        double[] y = x0.clone();
        for (int s = 0; s < chosen.length; s++) {
            if (chosen[s] < 0) continue;
            for (int i = 0; i < d; i++) y[(s / k) * d + i] += gates[s] * out[rowOfSlot[s] * d + i];
        }
        return y;
    }
}
