package dev.dsmoe.infer;

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
