package dev.dsmoe.infer;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.IntPredicate;

/**
 * Picks the next token from logits: greedy (temperature 0), or a draw from
 * {@code softmax(logits / temperature)} restricted to the {@code topK} most likely tokens
 * (0 = all) and then to the smallest set whose probability reaches {@code topP} (1 = all),
 * renormalised. Seeded {@link SplittableRandom}: the same seed and logits give the same tokens.
 * Working arrays are sized once for the vocabulary; sampling allocates nothing.
 *
 * <p>A sampler may be limited to some ids ({@code allowed}): the others never come out, as if their
 * logits were minus infinity. Generation limits it to the ids the tokenizer can decode, since a
 * model's vocab_size is often rounded up past its tokenizer's last id.
 */
public final class Sampler {

    private final double temperature;
    private final int topK;
    private final double topP;
    private final SplittableRandom random;
    private final double[] p;
    private final long[] order;
    /** Ids that may be sampled, or null for all. */
    private final boolean[] allowed;
    private final int allowedCount;

    /**
     * @param temperature 0 for greedy, else &gt; 0
     * @param topK        0 for no limit, else &gt;= 1
     * @param topP        in (0, 1]
     */
    public Sampler(int vocab, double temperature, int topK, double topP, long seed) {
        this(vocab, temperature, topK, topP, seed, null);
    }

    /**
     * A sampler that only returns ids in {@code [0, vocab)} for which {@code allowed} holds (null: all);
     * at least one must.
     */
    public Sampler(int vocab, double temperature, int topK, double topP, long seed, IntPredicate allowed) {
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw new IllegalArgumentException("temperature must be a finite number >= 0, got " + temperature);
        }
        if (topK < 0) throw new IllegalArgumentException("top-k must be >= 0 (0 = no limit), got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
        this.temperature = temperature;
        this.topK = topK;
        this.topP = topP;
        this.random = new SplittableRandom(seed);
        this.p = new double[vocab];
        this.order = new long[vocab];
        if (allowed == null) {
            this.allowed = null;
            this.allowedCount = vocab;
        } else {
            this.allowed = new boolean[vocab];
            int c = 0;
            for (int v = 0; v < vocab; v++) if (this.allowed[v] = allowed.test(v)) c++;
            if (c == 0) throw new IllegalArgumentException("no token id below " + vocab + " may be sampled");
            this.allowedCount = c;
        }
    }

    /** A greedy sampler. */
    public static Sampler greedy(int vocab) {
        return new Sampler(vocab, 0, 0, 1, 0);
    }

    /** A greedy sampler over the ids {@code allowed} admits (see the six-argument constructor). */
    public static Sampler greedy(int vocab, IntPredicate allowed) {
        return new Sampler(vocab, 0, 0, 1, 0, allowed);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }

    /** The next token from {@code logits[0 .. V)}. */
    public int sample(float[] logits) {
        int n = p.length;
        if (logits.length < n) throw new IllegalArgumentException("logits have " + logits.length + " entries, need " + n);
        if (temperature == 0) return argmax(logits, n);
        double max = Double.NEGATIVE_INFINITY;
        for (int v = 0; v < n; v++) if (allows(v)) max = Math.max(max, logits[v]);
        double sum = 0;
        for (int v = 0; v < n; v++) sum += p[v] = allows(v) ? Math.exp((logits[v] - max) / temperature) : 0;
        boolean restrict = (topK > 0 && topK < allowedCount) || topP < 1;
        if (!restrict) return draw(sum, n);
        // Sort by probability, descending: float bits of a non-negative float order like the value;
        // barred ids get negative keys, below every allowed one, so the kept prefix never holds one.
        for (int v = 0; v < n; v++) {
            order[v] = allows(v) ? ((long) Float.floatToIntBits((float) (p[v] / sum)) << 32) | v : (-1L << 32) | v;
        }
        Arrays.sort(order, 0, n);
        int keep = topK > 0 ? Math.min(topK, allowedCount) : allowedCount;
        double mass = 0, total = 0;
        int kept = 0;
        for (int i = 0; i < keep; i++) {
            int v = (int) order[n - 1 - i];
            mass += p[v] / sum;
            total += p[v];
            kept++;
            if (mass >= topP) break;
        }
        double u = random.nextDouble() * total;
        for (int i = 0; i < kept; i++) {
            int v = (int) order[n - 1 - i];
            u -= p[v];
            if (u < 0) return v;
        }
        return (int) order[n - kept];
    }

    private int draw(double sum, int n) {
        double u = random.nextDouble() * sum;
        for (int v = 0; v < n; v++) {
            u -= p[v];
            if (u < 0) return v;
        }
        for (int v = n - 1; v >= 0; v--) if (p[v] > 0) return v; // rounding left u just above 0
        for (int v = n - 1; v >= 0; v--) if (allows(v)) return v;
        return n - 1;
    }

    private boolean allows(int v) {
        return allowed == null || allowed[v];
    }

    private int argmax(float[] a, int n) {
        int best = -1;
        for (int v = 0; v < n; v++) if (allows(v) && (best < 0 || a[v] > a[best])) best = v;
        return best;
    }
}
