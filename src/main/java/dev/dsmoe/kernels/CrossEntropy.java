package dev.dsmoe.kernels;


/**
 * Softmax cross-entropy over logits, fused with the softmax so that the gradient is written in
 * one pass and large logits stay finite (max-subtraction / log-sum-exp form).
 *
 * <p>Shapes: {@code logits, dlogits} are {@code [T, V]} row-major; {@code targets} is
 * {@code [T]} with values in {@code [0, V)} or equal to {@code ignoreIndex} (such tokens have
 * loss 0, gradient 0 and are not counted); {@code losses} is {@code [T]} and receives the
 * per-token losses (it is also the scratch from which the mean is summed, in double, serially,
 * so the result does not depend on the thread count). Rows are split across {@link Parallel}.
 */
public final class CrossEntropy {

    /** The ignore value the engine uses for targets (padding, positions without a next token). */
    public static final int IGNORE = -1;

    private CrossEntropy() {}

    /** Number of targets in {@code [tOff, tOff+T)} that are not {@code ignoreIndex}. */
    public static int count(int[] targets, int tOff, int T, int ignoreIndex) {
        int c = 0;
        for (int t = 0; t < T; t++) if (targets[tOff + t] != ignoreIndex) c++;
        return c;
    }

    /**
     * Per-token losses {@code -log softmax(logits[t])[targets[t]]} into {@code losses} (0 for
     * ignored tokens); returns their mean over counted tokens (0 when none is counted).
     */
    public static float forward(float[] logits, int lOff, int[] targets, int tOff, int T, int V,
                                int ignoreIndex, float[] losses, int lossOff) {
        return forwardBackward(logits, lOff, targets, tOff, T, V, ignoreIndex, 0f, null, 0, losses, lossOff);
    }

    /**
     * Losses as in {@link #forward} and, when {@code dlogits} is not null, the gradient of
     * {@code dloss * mean loss}: {@code dlogits[t] = (softmax(logits[t]) - onehot(targets[t])) *
     * dloss / count}, zero rows for ignored tokens. {@code dlogits} is overwritten and may be
     * {@code logits} itself at the same offset (in place). Returns the mean loss.
     */
    public static float forwardBackward(float[] logits, int lOff, int[] targets, int tOff, int T, int V,
                                        int ignoreIndex, float dloss, float[] dlogits, int dOff,
                                        float[] losses, int lossOff) {
        if (T < 0 || V <= 0) throw new IllegalArgumentException("need T >= 0 and V > 0");
        Simd.checkRange("logits", logits, lOff, (long) T * V);
        Simd.checkRange("targets", targets, tOff, T);
        Simd.checkRange("losses", losses, lossOff, T);
        if (dlogits != null) Simd.checkRange("dlogits", dlogits, dOff, (long) T * V);
        int count = 0;
        for (int t = 0; t < T; t++) {
            int y = targets[tOff + t];
            if (y == ignoreIndex) continue;
            if (y < 0 || y >= V) {
                throw new IllegalArgumentException("target " + y + " at position " + t
                        + " outside [0, " + V + ") and not the ignore value " + ignoreIndex);
            }
            count++;
        }
        final float scale = count == 0 ? 0f : dloss / count;
        Parallel.forRange(T, Simd.rowGrain(V), (r0, r1) -> {
            for (int t = r0; t < r1; t++) {
                losses[lossOff + t] = row(logits, lOff + t * V, targets[tOff + t], V, ignoreIndex,
                        dlogits, dOff + t * V, scale);
            }
        });
        if (count == 0) return 0f;
        double sum = 0;
        for (int t = 0; t < T; t++) sum += losses[lossOff + t];
        return (float) (sum / count);
    }

    private static float row(float[] x, int xo, int target, int V, int ignoreIndex,
                             float[] d, int dOff, float scale) {
        if (target == ignoreIndex) {
            if (d != null) Simd.zero(d, dOff, V);
            return 0f;
        }
        float max = Simd.max(x, xo, V);
        float xt = x[xo + target]; // read first: d may be x itself
        // exp(x - max) goes straight into d when there is one, so each logit's exp is computed once
        float sum = d != null ? Simd.expShiftStore(x, xo, d, dOff, V, max) : Simd.sumExp(x, xo, V, max);
        float loss = (max - xt) + (float) StrictMath.log(sum);
        if (d != null) {
            Simd.scale(d, dOff, d, dOff, V, scale / sum);
            d[dOff + target] -= scale;
        }
        return loss;
    }
}
