package dev.dsmoe.infer;

import java.util.Arrays;
import java.util.Objects;

/**
 * The generation loop: prefill the prompt, then sample and decode token by token, handing each
 * new token to a listener (for streaming), until an end token, a token limit, the end of the
 * context, or the listener says stop (e.g. the caller matched a stop string).
 */
public final class Generator {

    /** Why generation ended. */
    public enum StopReason { END_TOKEN, MAX_TOKENS, CONTEXT_FULL, LISTENER }

    /** Receives each generated token; returns false to stop. */
    @FunctionalInterface
    public interface TokenListener {
        boolean onToken(int token);
    }

    /**
     * The generated tokens (without an end token), why generation stopped, and the times of the
     * prompt's prefill and of the decode loop; the listener's time (printing, stop-string checks)
     * is left out, so the decode speed is the model's whatever the terminal.
     */
    public record Result(int[] tokens, StopReason reason, double prefillSeconds, double decodeSeconds) {
        /** Generated tokens per second of decode (each generated token after the first costs one decode step). */
        public double decodeTokensPerSecond() {
            return decodeSeconds > 0 ? Math.max(0, tokens.length - 1) / decodeSeconds : Double.NaN;
        }
    }

    private final Engine engine;
    private final Sampler sampler;

    public Generator(Engine engine, Sampler sampler) {
        this.engine = Objects.requireNonNull(engine, "engine");
        this.sampler = Objects.requireNonNull(sampler, "sampler");
    }

    /**
     * Generates up to {@code maxNewTokens} tokens after {@code prompt}.
     *
     * @param endTokenId a token that ends generation (not emitted), or -1 for none
     * @param listener   called with each generated token, may be null
     */
    public Result generate(int[] prompt, int maxNewTokens, int endTokenId, TokenListener listener) {
        if (maxNewTokens < 0) throw new IllegalArgumentException("max new tokens must be >= 0, got " + maxNewTokens);
        long t0 = System.nanoTime();
        float[] logits = engine.prefill(prompt);
        long t1 = System.nanoTime();
        long inListener = 0;
        int[] out = new int[Math.min(maxNewTokens, 1024)];
        int n = 0;
        StopReason reason = StopReason.MAX_TOKENS;
        while (n < maxNewTokens) {
            int token = sampler.sample(logits);
            if (token == endTokenId) {
                reason = StopReason.END_TOKEN;
                break;
            }
            if (n == out.length) out = Arrays.copyOf(out, Math.min(maxNewTokens, 2 * out.length));
            out[n++] = token;
            if (listener != null) {
                long l0 = System.nanoTime();
                boolean more = listener.onToken(token);
                inListener += System.nanoTime() - l0;
                if (!more) {
                    reason = StopReason.LISTENER;
                    break;
                }
            }
            if (n == maxNewTokens) break;
            if (engine.position() >= engine.contextLength()) {
                reason = StopReason.CONTEXT_FULL;
                break;
            }
            logits = engine.decode(token);
        }
        long t2 = System.nanoTime();
        return new Result(Arrays.copyOf(out, n), reason, (t1 - t0) / 1e9, (t2 - t1 - inListener) / 1e9);
    }
}
