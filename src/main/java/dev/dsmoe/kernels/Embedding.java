package dev.dsmoe.kernels;

/**
 * Token embedding: {@code out[t] = table[tokens[t]]}, and its backward, which adds each
 * position's gradient into its token's row of the table's gradient.
 */
public final class Embedding {

    private Embedding() {}

    /** {@code out[t] = table[tokens[from + t]]} for {@code t < n}, as fp32 whatever the table's format. */
    public static void forward(TensorView table, int[] tokens, int from, int n, TensorView out) {
        float[] y = out.array();
        for (int t = 0; t < n; t++) table.copyRow(tokens[from + t], y, out.rowOff(t));
    }

    /** {@code dTable[tokens[t]] += dOut[t]} for {@code t < n}, in position order. */
    public static void backward(TensorView dTable, int[] tokens, int n, TensorView dOut) {
        float[] g = dTable.array(), dy = dOut.array();
        int d = dOut.cols;
        for (int t = 0; t < n; t++) {
            int row = dTable.rowOff(tokens[t]), o = dOut.rowOff(t);
            for (int i = 0; i < d; i++) g[row + i] += dy[o + i];
        }
    }
}
