package dev.dsmoe.kernels;

/**
 * Gates, the router probabilities applied to the experts' outputs, and their backward.
 *
 * <p>Dense (all experts computed, DS-MoE training): each expert's column block of an activation
 * {@code [N, E·w]} scaled by its gate, {@link #forward}/{@link #backward}. Sparse (each token's
 * selected experts, grouped by expert with {@link ExpertGroups}): the grouped rows' outputs
 * scatter-added back to their tokens with their gates, {@link #scatter}/{@link #scatterBackward},
 * and the backward of the gather that grouped the inputs, {@link #gatherBackward}. A token's
 * selections are its slots {@code t·K + j}: {@code chosen[slot]} (an expert, or -1 for none),
 * {@code gates[slot]} and {@code rowOfSlot[slot]}, its grouped row. Every token's sum runs over its
 * slots in order, so results do not depend on the grouping or the threads.
 */
public final class Gating {

    private Gating() {}

    /** {@code dst[t, e·w + j] = S[t, e] · src[t, e·w + j]} for the first {@code rows} rows, E = {@code gates.cols()}. */
    public static void forward(TensorView src, TensorView gates, TensorView dst, int rows) {
        int experts = gates.cols, w = src.cols / experts;
        Parallel.forRange(rows, 16, (t0, t1) -> { // the body reads the arrays itself: a smaller lambda per call
            float[] s = src.array(), g = gates.array(), y = dst.array();
            for (int t = t0; t < t1; t++) {
                int so = src.rowOff(t), yo = dst.rowOff(t), go = gates.rowOff(t);
                for (int e = 0; e < experts; e++) {
                    float gate = g[go + e];
                    for (int j = e * w; j < (e + 1) * w; j++) y[yo + j] = gate * s[so + j];
                }
            }
        });
    }

    /**
     * Backward of {@link #forward}: {@code dGates[t, e] = Σ_j dDst · src} over expert e's block, and
     * {@code dSrc = S · dDst}, written over dDst in place.
     */
    public static void backward(TensorView dDst, TensorView src, TensorView gates, TensorView dGates, int rows) {
        int experts = gates.cols, w = src.cols / experts;
        Parallel.forRange(rows, 16, (t0, t1) -> {
            float[] dy = dDst.array(), s = src.array(), g = gates.array(), dg = dGates.array();
            for (int t = t0; t < t1; t++) {
                int so = src.rowOff(t), yo = dDst.rowOff(t), go = gates.rowOff(t), dgo = dGates.rowOff(t);
                for (int e = 0; e < experts; e++) {
                    float gate = g[go + e];
                    double dot = 0;
                    for (int j = e * w; j < (e + 1) * w; j++) {
                        dot += dy[yo + j] * s[so + j];
                        dy[yo + j] *= gate;
                    }
                    dg[dgo + e] = (float) dot;
                }
            }
        });
    }

    /**
     * The gated scatter: {@code dst[t] += Σ_j gates[t·K+j] · rowsOut[rowOfSlot[t·K+j]]} for
     * {@code t < n}, over the slots with an expert.
     */
    public static void scatter(TensorView rowsOut, int[] rowOfSlot, int[] chosen, float[] gates, int n, int k,
                               TensorView dst) {
        int d = dst.cols;
        Parallel.forRange(n, Math.max(1, 4096 / (d * k)), (t0, t1) -> {
            float[] out = rowsOut.array(), x = dst.array();
            for (int t = t0; t < t1; t++) {
                int xo = dst.rowOff(t);
                for (int j = 0; j < k; j++) {
                    int slot = t * k + j;
                    if (chosen[slot] < 0) continue;
                    float g = gates[slot];
                    int ro = rowsOut.rowOff(rowOfSlot[slot]);
                    for (int i = 0; i < d; i++) x[xo + i] += g * out[ro + i];
                }
            }
        });
    }

    /**
     * Backward of {@link #scatter}: each grouped row's gradient {@code dRows[row] = gate · dDst[t]}
     * and the gates' gradient {@code dGates[t, chosen] = dDst[t] · rowsOut[row]} ({@code [n, E]};
     * zero for the experts a token did not select).
     */
    public static void scatterBackward(TensorView dDst, TensorView rowsOut, int[] rowOfSlot, int[] chosen, float[] gates,
                                       int n, int k, TensorView dRows, TensorView dGates) {
        java.util.Arrays.fill(dGates.array(), dGates.off(), dGates.rowOff(n), 0f);
        Parallel.forRange(n, 16, (t0, t1) -> {
            float[] dOut = dDst.array(), out = rowsOut.array(), dr = dRows.array(), dg = dGates.array();
            int d = dDst.cols;
            for (int t = t0; t < t1; t++) {
                int to = dDst.rowOff(t);
                for (int j = 0; j < k; j++) {
                    int slot = t * k + j;
                    if (chosen[slot] < 0) continue;
                    int ro = rowsOut.rowOff(rowOfSlot[slot]), dro = dRows.rowOff(rowOfSlot[slot]);
                    float g = gates[slot];
                    double dot = 0;
                    for (int i = 0; i < d; i++) {
                        float go = dOut[to + i];
                        dot += go * out[ro + i];
                        dr[dro + i] = g * go;
                    }
                    dg[dGates.rowOff(t) + chosen[slot]] += (float) dot;
                }
            }
        });
    }

    /**
     * Backward of {@link ExpertGroups#gather}: {@code dX[t] = Σ_j dRows[rowOfSlot[t·K+j]]} for
     * {@code t < n}, overwriting dX.
     */
    public static void gatherBackward(TensorView dRows, int[] rowOfSlot, int[] chosen, int n, int k, TensorView dX) {
        Parallel.forRange(n, 16, (t0, t1) -> {
            float[] dr = dRows.array(), dx = dX.array();
            int d = dX.cols;
            for (int t = t0; t < t1; t++) {
                int xo = dX.rowOff(t);
                java.util.Arrays.fill(dx, xo, xo + d, 0f);
                for (int j = 0; j < k; j++) {
                    if (chosen[t * k + j] < 0) continue;
                    int ro = dRows.rowOff(rowOfSlot[t * k + j]);
                    for (int i = 0; i < d; i++) dx[xo + i] += dr[ro + i];
                }
            }
        });
    }

    /** Each grouped row scaled by its slot's gate, {@code rows[r] *= gates[slot(r)]}: gates applied before a sum of products. */
    public static void scaleRows(TensorView rows, ExpertGroups groups, float[] gates) {
        float[] a = rows.array();
        for (int r = 0; r < groups.rows(); r++) {
            float g = gates[groups.slot(r)];
            for (int i = rows.rowOff(r); i < rows.rowOff(r) + rows.cols; i++) a[i] *= g;
        }
    }

    /**
     * The sum of the grouped rows into their tokens, {@code x[token(r)] += rows[r]} in row order
     * (so each token's terms add up in ascending expert order, whatever else was grouped with
     * them): the scatter after output products whose inputs were gated ({@link #scaleRows}).
     * Split over columns, so every element is summed by one thread in that order.
     */
    public static void addRows(TensorView rows, ExpertGroups groups, TensorView x) {
        addRows(rows, groups, x, null);
    }

    /** {@link #addRows} leaving out the rows of tokens t with {@code skip[t] != 0} (null: none), whose sums are made elsewhere. */
    public static void addRows(TensorView rows, ExpertGroups groups, TensorView x, int[] skip) {
        int n = groups.rows(), d = x.cols;
        if (rows.cols != d) throw new IllegalArgumentException("rows of width " + rows.cols + " into x of width " + d);
        float[] a = rows.array(), xa = x.array();
        Parallel.forRange(d, Math.max(Simd.MIN_CHUNK / Math.max(1, n), 64), (j0, j1) -> {
            for (int r = 0; r < n; r++) {
                if (skip != null && skip[groups.token(r)] != 0) continue;
                int ro = rows.rowOff(r) + j0, xo = x.rowOff(groups.token(r)) + j0;
                for (int j = 0; j < j1 - j0; j++) xa[xo + j] += a[ro + j];
            }
        });
    }
}
