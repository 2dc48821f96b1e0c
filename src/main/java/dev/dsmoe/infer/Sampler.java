package dev.dsmoe.infer;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from logits: greedy (temperature 0), or a draw from
 * {@code softmax(logits / temperature)} restricted to the {@code topK} most likely tokens
 * (0 = all) and then to the smallest set whose probability reaches {@code topP} (1 = all),
 * renormalised. Seeded {@link SplittableRandom}: the same seed and logits give the same tokens.
 * Working arrays are sized once for the vocabulary; sampling allocates nothing.
 */
public final class Sampler {

    private final double temperature;
    private final int topK;
    private final double topP;
    private final SplittableRandom random;
    private final double[] p;
    private final long[] order;

    /**
     * @param temperature 0 for greedy, else &gt; 0
     * @param topK        0 for no limit, else &gt;= 1
     * @param topP        in (0, 1]
     */
    public Sampler(int vocab, double temperature, int topK, double topP, long seed) {
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
    }

    /** A greedy sampler. */
    public static Sampler greedy(int vocab) {
        return new Sampler(vocab, 0, 0, 1, 0);
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
        for (int v = 0; v < n; v++) max = Math.max(max, logits[v]);
        double sum = 0;
        for (int v = 0; v < n; v++) sum += p[v] = Math.exp((logits[v] - max) / temperature);
        boolean restrict = (topK > 0 && topK < n) || topP < 1;
        if (!restrict) return draw(sum, n);
        // Sort by probability, descending: float bits of a non-negative float order like the value.
        for (int v = 0; v < n; v++) order[v] = ((long) Float.floatToIntBits((float) (p[v] / sum)) << 32) | v;
        Arrays.sort(order, 0, n);
        int keep = topK > 0 ? Math.min(topK, n) : n;
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
        return n - 1;
    }

    private static int argmax(float[] a, int n) {
        int best = 0;
        for (int v = 1; v < n; v++) if (a[v] > a[best]) best = v;
        return best;
    }
}
