package dev.dsmoe.model;

/**
 * Auxiliary router losses over one micro-batch of N tokens and E experts, given the router
 * probabilities S {@code [N, E]} (rows sum to 1) and their logarithms.
 *
 * <p>Mutual-information loss (METHOD section 3, as in ModuleFormer's gate):
 * <pre>
 *   p̄_i    = (1/N) Σ_n S_ni                          expert marginal
 *   H(e)   = -Σ_i p̄_i log(p̄_i + ε)                   balance: maximised
 *   H(e|x) = (1/N) Σ_n -Σ_i S_ni log S_ni             per-token peakedness: minimised
 *   L_MI   = -H(e) + H(e|x)
 * </pre>
 * Switch loss (Fedus et al.): {@code L = E · Σ_i f_i · P_i}, f_i the fraction of token-slots
 * routed to expert i (a constant for the gradient), P_i = p̄_i.
 *
 * <p>Backward methods <em>add</em> {@code weight · dL/dS} into {@code dS}; the router's softmax
 * backward then carries it to the router logits.
 */
public final class RouterLoss {

    /** ε inside {@code log p̄}, as in ModuleFormer. */
    public static final double EPS = 1e-8;

    private RouterLoss() {}

    /** The two entropies and the MI loss of one router on one micro-batch. */
    public record Entropies(double marginal, double conditional) {
        /** {@code L_MI = -H(e) + H(e|x)}. */
        public double mi() {
            return -marginal + conditional;
        }
    }

    /**
     * Computes p̄ into {@code pBar[E]} and returns H(e) and H(e|x).
     *
     * @param s    probabilities {@code [n, e]}, row-major
     * @param logS their logarithms (from a log-softmax, so no log(0))
     */
    public static Entropies entropies(float[] s, float[] logS, int n, int e, double[] pBar) {
        java.util.Arrays.fill(pBar, 0, e, 0.0);
        double cond = 0;
        for (int t = 0; t < n; t++) {
            int row = t * e;
            for (int i = 0; i < e; i++) {
                pBar[i] += s[row + i];
                cond -= (double) s[row + i] * logS[row + i];
            }
        }
        double marg = 0;
        for (int i = 0; i < e; i++) {
            pBar[i] /= n;
            marg -= pBar[i] * Math.log(pBar[i] + EPS);
        }
        return new Entropies(marg, cond / n);
    }

    /**
     * Adds {@code weight · dL_MI/dS} into {@code dS}, with p̄ from {@link #entropies}:
     * {@code dL/dS_ni = (1/N)[log(p̄_i+ε) + p̄_i/(p̄_i+ε) - log S_ni - 1]}.
     */
    public static void miBackward(float[] logS, double[] pBar, int n, int e, double weight, float[] dS) {
        double scale = weight / n;
        for (int i = 0; i < e; i++) {
            double marg = Math.log(pBar[i] + EPS) + pBar[i] / (pBar[i] + EPS) - 1.0;
            for (int t = 0; t < n; t++) {
                dS[t * e + i] += (float) (scale * (marg - logS[t * e + i]));
            }
        }
    }

    /**
     * Switch loss {@code E · Σ_i f_i p̄_i} where {@code f_i = counts_i / slots}.
     *
     * @param counts token-slots routed to each expert in this micro-batch
     * @param slots  total token-slots (N · K)
     */
    public static double switchLoss(double[] pBar, int[] counts, int slots, int e) {
        double l = 0;
        for (int i = 0; i < e; i++) l += (double) counts[i] / slots * pBar[i];
        return e * l;
    }

    /** Adds {@code weight · dL_switch/dS} into {@code dS}: {@code E · f_i / N} for every token. */
    public static void switchBackward(int[] counts, int slots, int n, int e, double weight, float[] dS) {
        for (int i = 0; i < e; i++) {
            float g = (float) (weight * e * ((double) counts[i] / slots) / n);
            for (int t = 0; t < n; t++) dS[t * e + i] += g;
        }
    }

    /**
     * The auxiliary loss {@code kind} of one router from its entropies and p̄: 0 for none, and
     * for the switch loss without top-k routing ({@code counts == null}: no token-slot fractions).
     */
    public static double aux(ModelConfig.AuxLoss kind, double marginal, double conditional, double[] pBar, int[] counts,
                             int slots, int e) {
        return switch (kind) {
            case NONE -> 0;
            case MI -> -marginal + conditional;
            case SWITCH -> counts != null ? switchLoss(pBar, counts, slots, e) : 0;
        };
    }

    /** Adds {@code weight · dL/dS} of the auxiliary loss {@code kind} into {@code dS} (as {@link #aux} defines it). */
    public static void auxBackward(ModelConfig.AuxLoss kind, float[] logS, double[] pBar, int[] counts, int slots, int n,
                                   int e, double weight, float[] dS) {
        switch (kind) {
            case MI -> miBackward(logS, pBar, n, e, weight, dS);
            case SWITCH -> {
                if (counts != null) switchBackward(counts, slots, n, e, weight, dS);
            }
            case NONE -> { }
        }
    }
}
