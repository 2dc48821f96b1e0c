package dev.dsmoe.infer;

import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamCounts;

/**
 * What an {@link Engine} did since its statistics were last reset: throughput of prefill
 * (prompt and scored tokens) and decode, and the experts the selection activated (METHOD
 * section 5): the mean number of attention (MoA) and MLP experts per token and layer, per layer,
 * the non-embedding parameters that implies per token and the "active hidden" fraction (active
 * expert parameters / all expert parameters). Expert figures are NaN before any token.
 */
public record InferenceStats(String selection, long prefillTokens, double prefillSeconds, long decodeTokens,
                             double decodeSeconds, double meanActiveAttention, double meanActiveMlp,
                             double[] activeAttentionPerLayer, double[] activeMlpPerLayer,
                             double activeParamsPerToken, double activeExpertFraction) {

    /**
     * The statistics of {@code routedTokens} tokens whose layers activated {@code attActive[l]}
     * attention and {@code mlpActive[l]} MLP experts in all (an engine's counters), for a model
     * of {@code c} whose parameter counts are {@code counts}.
     */
    static InferenceStats of(ModelConfig c, ParamCounts counts, String selection, long[] attActive, long[] mlpActive, long routedTokens,
                             long prefillTokens, long prefillNanos, long decodeTokens, long decodeNanos) {
        int layers = attActive.length;
        double[] att = new double[layers], mlp = new double[layers];
        double sumAtt = 0, sumMlp = 0;
        for (int l = 0; l < layers; l++) {
            att[l] = routedTokens > 0 ? (double) attActive[l] / routedTokens : Double.NaN;
            mlp[l] = routedTokens > 0 ? (double) mlpActive[l] / routedTokens : Double.NaN;
            sumAtt += attActive[l];
            sumMlp += mlpActive[l];
        }
        double meanAtt = Double.NaN, meanMlp = Double.NaN, params = Double.NaN, frac = Double.NaN;
        if (routedTokens > 0 && layers > 0) {
            meanAtt = clamp(sumAtt / ((double) routedTokens * layers), c.nAtt());
            meanMlp = clamp(sumMlp / ((double) routedTokens * layers), c.nFfd());
            params = counts.activePerToken(meanAtt, meanMlp);
            frac = counts.activeExpertFraction(meanAtt, meanMlp);
        }
        return new InferenceStats(selection, prefillTokens, prefillNanos / 1e9, decodeTokens, decodeNanos / 1e9,
                meanAtt, meanMlp, att, mlp, params, frac);
    }

    private static double clamp(double v, int n) {
        return Math.max(1, Math.min(n, v)); // guards rounding at the ends of [1, N]
    }

    public double prefillTokensPerSecond() {
        return prefillSeconds > 0 ? prefillTokens / prefillSeconds : Double.NaN;
    }

    public double decodeTokensPerSecond() {
        return decodeSeconds > 0 ? decodeTokens / decodeSeconds : Double.NaN;
    }

    /** Active hidden in percent. */
    public double activeHiddenPercent() {
        return 100 * activeExpertFraction;
    }
}
