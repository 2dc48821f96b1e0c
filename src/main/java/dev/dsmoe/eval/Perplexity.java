package dev.dsmoe.eval;

import dev.dsmoe.data.TokenShard;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.InferenceStats;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * Validation loss and perplexity of a token shard under the engine's current expert selection.
 *
 * <p>The first {@code limit} tokens of the shard (all of them by default) are cut into
 * consecutive, non-overlapping windows of {@code seq} tokens (the last one may be shorter). Each
 * window is a new sequence: its first token has no context and is not scored, every other token
 * {@code t} contributes {@code -log p(t | the window's tokens before it)}. So each token is scored
 * at most once, and a shard of {@code n} tokens in {@code w} windows scores {@code n - w} tokens
 * (a last window of a single token scores nothing and is dropped). Windows cross document
 * boundaries, as training's windows do. The loss is the mean in nats per token, the perplexity
 * its exponential.
 */
public final class Perplexity {

    private Perplexity() {}

    /** Called after each window: tokens read so far, of {@code total}, and seconds since the start. */
    public interface Progress {
        void update(long done, long total, double seconds);

        Progress NONE = (d, t, s) -> { };
    }

    /**
     * One evaluation: {@code tokens} read from the shard in {@code windows} windows of at most
     * {@code seq} tokens, {@code tokensScored} of them scored with a total negative
     * log-likelihood {@code sumNll} (nats), in {@code seconds}, with the engine's statistics.
     */
    public record Result(String selection, int seq, long tokens, long windows, long tokensScored, double sumNll,
                         double seconds, InferenceStats stats) {

        /** Mean negative log-likelihood, nats per token. */
        public double loss() {
            return tokensScored > 0 ? sumNll / tokensScored : Double.NaN;
        }

        public double perplexity() {
            return Math.exp(loss());
        }

        /** Tokens read (scored or not) per second of wall time. */
        public double tokensPerSecond() {
            return seconds > 0 ? tokens / seconds : Double.NaN;
        }

        /** The figures as a flat JSON-ready map (snake_case keys; NaN stays NaN). */
        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("selection", selection);
            m.put("loss", loss());
            m.put("perplexity", perplexity());
            m.put("tokens_scored", tokensScored);
            m.put("tokens", tokens);
            m.put("windows", windows);
            m.put("seq", seq);
            m.put("mean_active_attention", stats.meanActiveAttention());
            m.put("mean_active_mlp", stats.meanActiveMlp());
            m.put("active_attention_per_layer", stats.activeAttentionPerLayer());
            m.put("active_mlp_per_layer", stats.activeMlpPerLayer());
            m.put("active_params_per_token", stats.activeParamsPerToken());
            m.put("active_hidden_percent", stats.activeHiddenPercent());
            m.put("tokens_per_second", tokensPerSecond());
            m.put("seconds", seconds);
            return m;
        }
    }

    /** Tokens read for a shard of {@code shardTokens} and a limit ({@code < 0}: none). */
    public static long tokensRead(long shardTokens, long limit) {
        return limit < 0 ? shardTokens : Math.min(shardTokens, limit);
    }

    /** Windows that score at least one token among {@code tokens} read. */
    public static long windows(long tokens, int seq) {
        checkSeq(seq);
        long full = tokens / seq;
        return full + (tokens % seq >= 2 ? 1 : 0);
    }

    /** Tokens scored among {@code tokens} read in windows of {@code seq}. */
    public static long scoredTokens(long tokens, int seq) {
        checkSeq(seq);
        long full = tokens / seq, rest = tokens % seq;
        return full * (seq - 1) + Math.max(0, rest - 1);
    }

    private static void checkSeq(int seq) {
        if (seq < 2) throw new IllegalArgumentException("the window must hold at least 2 tokens, got " + seq);
    }

    /**
     * Scores up to {@code maxWindows} windows of the shard, for at most {@code maxSeconds}, and
     * throws the result away: lets the JIT compile the hot paths so that the throughput of the
     * first real evaluation is not mostly compilation. Resets the engine's statistics.
     */
    public static void warmUp(Engine engine, TokenShard shard, int seq, int maxWindows, double maxSeconds) {
        checkSeq(seq);
        int len = (int) Math.min(Math.min(seq, engine.contextLength()), shard.size());
        if (len < 2) return;
        int[] w = new int[len];
        long t0 = System.nanoTime();
        for (int i = 0; i < maxWindows && (System.nanoTime() - t0) / 1e9 < maxSeconds; i++) {
            long start = (long) i * len;
            if (start + len > shard.size()) start = 0;
            shard.read(start, w, 0, len);
            engine.score(w);
        }
        engine.resetStats();
    }

    /**
     * Evaluates {@code shard} (its first {@code limit} tokens; {@code limit < 0}: all) under the
     * engine's selection. The engine's statistics are reset first, so {@link Result#stats()}
     * covers exactly this evaluation. The engine's context must hold {@code seq} tokens.
     */
    public static Result evaluate(Engine engine, TokenShard shard, int seq, long limit, Progress progress) {
        Objects.requireNonNull(progress, "progress");
        checkSeq(seq);
        if (seq > engine.contextLength()) {
            throw new IllegalArgumentException("window of " + seq + " tokens exceeds the engine's context of "
                    + engine.contextLength());
        }
        long n = tokensRead(shard.size(), limit);
        if (scoredTokens(n, seq) == 0) {
            throw new IllegalArgumentException(shard.file() + ": " + (n == 0 ? "the validation shard is empty"
                    : "only " + n + " token(s), nothing to score") + "; prepare a corpus with a validation split"
                    + " (e.g. raise --val-fraction of 'dsmoe prepare')");
        }
        engine.resetStats();
        int[] buf = new int[seq];
        double sum = 0;
        long scored = 0, windows = 0;
        long t0 = System.nanoTime();
        for (long start = 0; start < n; start += seq) {
            int len = (int) Math.min(seq, n - start);
            if (len < 2) break;
            int[] w = len == seq ? buf : new int[len];
            shard.read(start, w, 0, len);
            double[] lp = engine.score(w);
            for (double v : lp) sum -= v;
            scored += lp.length;
            windows++;
            progress.update(start + len, n, (System.nanoTime() - t0) / 1e9);
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        return new Result(engine.selection().toString(), seq, n, windows, scored, sum, secs, engine.stats());
    }
}
