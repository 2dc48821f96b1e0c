package dev.dsmoe.infer;

import dev.dsmoe.kernels.ExpertGroups;
import dev.dsmoe.model.ModelConfig;
import java.util.Locale;
import java.util.Objects;

/**
 * Which experts compute a token at inference (METHOD section 5): one {@link Rule} for the
 * attention (MoA) routers and one for the MLP routers. Scores are the router probabilities
 * {@code S_i} of each token; the selected experts' outputs are weighted by their {@code S_i}
 * without renormalisation, as in training.
 *
 * <p>String forms ({@link #parse}); MoA stays dense unless {@code att=} is given:
 * <pre>
 * dense                              all experts (the training-time function of DS-MoE and Dense)
 * top-k:K                            the K highest-scoring MLP experts
 * top-k:att=A,mlp=K                  A attention and K MLP experts (either may be left out: dense)
 * threshold:EPS                      every MLP expert with N·S_i &gt; EPS, at least the top one
 * threshold:att=EPS,mlp=EPS
 * threshold-top-k:EPS                K = the batch-average threshold count (rounded), then top-K
 * threshold-top-k:att=EPS,mlp=EPS
 * default                            (with a config) the model's own: training top-k for SMoE, else dense
 * </pre>
 */
public record ExpertSelection(Rule attention, Rule mlp) {

    /** The accepted string forms, for error messages and help texts. */
    public static final String FORMS = "dense, top-k:K, top-k:att=K,mlp=K, threshold:EPS, threshold:att=EPS,mlp=EPS, "
            + "threshold-top-k:EPS, threshold-top-k:att=EPS,mlp=EPS, default";

    /** Selection kinds. */
    public enum Kind {
        DENSE("dense"), TOP_K("top-k"), THRESHOLD("threshold"), THRESHOLD_TOP_K("threshold-top-k");

        final String text;

        Kind(String text) {
            this.text = text;
        }
    }

    /**
     * One router's rule: {@code k} for {@link Kind#TOP_K}, {@code epsilon} (on the normalised
     * probability {@code N·S_i}) for the threshold kinds.
     */
    public record Rule(Kind kind, int k, double epsilon) {
        public static final Rule DENSE = new Rule(Kind.DENSE, 0, 0);

        public Rule {
            Objects.requireNonNull(kind, "kind");
            if (kind == Kind.TOP_K && k < 1) throw new IllegalArgumentException("top-k needs K >= 1, got " + k);
            if ((kind == Kind.THRESHOLD || kind == Kind.THRESHOLD_TOP_K) && !(epsilon >= 0 && epsilon < Double.POSITIVE_INFINITY)) {
                throw new IllegalArgumentException(kind.text + " needs a finite epsilon >= 0, got " + epsilon);
            }
        }

        public static Rule topK(int k) {
            return new Rule(Kind.TOP_K, k, 0);
        }

        public static Rule threshold(double epsilon) {
            return new Rule(Kind.THRESHOLD, 0, epsilon);
        }

        public static Rule thresholdTopK(double epsilon) {
            return new Rule(Kind.THRESHOLD_TOP_K, 0, epsilon);
        }

        /** The most experts one token can get under this rule among {@code n}. */
        public int maxPerToken(int n) {
            return kind == Kind.TOP_K ? Math.min(k, n) : n;
        }

        /**
         * Selects experts for {@code n} tokens from their router probabilities
         * {@code probs[t*e + i]}. Writes {@code chosen[t*w + j]} (an expert index, or -1 padding)
         * and {@code gates[t*w + j]} (its probability) and returns the slot width {@code w}.
         * Dense and threshold slots are in expert order, top-k slots in descending score order.
         */
        public int select(float[] probs, int n, int e, int[] chosen, float[] gates) {
            return select(probs, 0, n, e, chosen, gates, 0);
        }

        /**
         * {@link #select(float[], int, int, int[], float[])} over {@code probs} from {@code pOff},
         * writing {@code chosen} and {@code gates} from {@code cOff}: one sequence's tokens of a
         * batch (threshold-top-k takes its K from these n tokens alone).
         */
        public int select(float[] probs, int pOff, int n, int e, int[] chosen, float[] gates, int cOff) {
            switch (kind) {
                case DENSE -> {
                    for (int t = 0; t < n; t++) {
                        for (int i = 0; i < e; i++) {
                            chosen[cOff + t * e + i] = i;
                            gates[cOff + t * e + i] = probs[pOff + t * e + i];
                        }
                    }
                    return e;
                }
                case TOP_K -> {
                    return topK(probs, pOff, n, e, Math.min(k, e), chosen, gates, cOff);
                }
                case THRESHOLD -> {
                    for (int t = 0; t < n; t++) {
                        int p = pOff + t * e, c = 0, best = argmax(probs, p, e);
                        for (int i = 0; i < e; i++) {
                            if (i == best || e * probs[p + i] > epsilon) {
                                chosen[cOff + t * e + c] = i;
                                gates[cOff + t * e + c] = probs[p + i];
                                c++;
                            }
                        }
                        for (; c < e; c++) {
                            chosen[cOff + t * e + c] = -1;
                            gates[cOff + t * e + c] = 0f;
                        }
                    }
                    return e;
                }
                case THRESHOLD_TOP_K -> {
                    if (n == 0) return 1;
                    long total = 0;
                    for (int t = 0; t < n; t++) total += thresholdCount(probs, pOff + t * e, e, epsilon);
                    int kk = (int) Math.max(1, Math.min(e, Math.round((double) total / n)));
                    return topK(probs, pOff, n, e, kk, chosen, gates, cOff);
                }
                default -> throw new AssertionError(kind);
            }
        }

        private static int topK(float[] probs, int pOff, int n, int e, int k, int[] chosen, float[] gates, int cOff) {
            ExpertGroups.topK(probs, pOff, n, e, k, chosen, cOff);
            for (int s = 0; s < n * k; s++) gates[cOff + s] = probs[pOff + (s / k) * e + chosen[cOff + s]];
            return k;
        }

        private static int thresholdCount(float[] probs, int off, int e, double eps) {
            int c = 0;
            for (int i = 0; i < e; i++) if (e * probs[off + i] > eps) c++;
            return Math.max(1, c);
        }

        private static int argmax(float[] a, int off, int n) {
            int best = 0;
            for (int i = 1; i < n; i++) if (a[off + i] > a[off + best]) best = i;
            return best;
        }

        @Override
        public String toString() {
            return switch (kind) {
                case DENSE -> "dense";
                case TOP_K -> "top-k:" + k;
                case THRESHOLD, THRESHOLD_TOP_K -> kind.text + ":" + fmt(epsilon);
            };
        }
    }

    public ExpertSelection {
        Objects.requireNonNull(attention, "attention rule");
        Objects.requireNonNull(mlp, "mlp rule");
    }

    /** All experts everywhere. */
    public static ExpertSelection dense() {
        return new ExpertSelection(Rule.DENSE, Rule.DENSE);
    }

    /** Top-K MLP experts, MoA dense (the paper's speed-test setting). */
    public static ExpertSelection topK(int kMlp) {
        return new ExpertSelection(Rule.DENSE, Rule.topK(kMlp));
    }

    /** Threshold on the MLP routers, MoA dense. */
    public static ExpertSelection threshold(double epsilon) {
        return new ExpertSelection(Rule.DENSE, Rule.threshold(epsilon));
    }

    /**
     * The model's own routing: the training top-k for an SMoE ({@code training_routing top_k}),
     * dense for Dense and DS-MoE.
     */
    public static ExpertSelection defaultFor(ModelConfig c) {
        return c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K ? topK(c.trainingTopK()) : dense();
    }

    /** Parses a form of the class comment except {@code default}; IllegalArgumentException names the forms. */
    public static ExpertSelection parse(String text) {
        String s = text == null ? "" : text.trim().toLowerCase(Locale.ROOT);
        if (s.equals("dense")) return dense();
        if (s.equals("default")) {
            throw new IllegalArgumentException("expert selection 'default' is the model's own; parse it with the model's config");
        }
        int colon = s.indexOf(':');
        Kind kind = null;
        if (colon > 0) {
            String head = s.substring(0, colon);
            for (Kind k : Kind.values()) if (k != Kind.DENSE && k.text.equals(head)) kind = k;
        }
        if (kind == null) throw bad(text, "");
        String args = s.substring(colon + 1).trim();
        if (args.isEmpty()) throw bad(text, "missing value after ':'");
        try {
            if (!args.contains("=")) return new ExpertSelection(Rule.DENSE, rule(kind, args));
            Rule att = Rule.DENSE, mlp = Rule.DENSE;
            boolean seenAtt = false, seenMlp = false;
            for (String part : args.split(",", -1)) {
                int eq = part.indexOf('=');
                if (eq < 0) throw bad(text, "'" + part + "' is not att=VALUE or mlp=VALUE");
                String key = part.substring(0, eq).trim(), value = part.substring(eq + 1).trim();
                switch (key) {
                    case "att" -> {
                        if (seenAtt) throw bad(text, "att given twice");
                        seenAtt = true;
                        att = rule(kind, value);
                    }
                    case "mlp" -> {
                        if (seenMlp) throw bad(text, "mlp given twice");
                        seenMlp = true;
                        mlp = rule(kind, value);
                    }
                    default -> throw bad(text, "unknown key '" + key + "' (use att or mlp)");
                }
            }
            return new ExpertSelection(att, mlp);
        } catch (NumberFormatException e) {
            throw bad(text, "not a number: " + e.getMessage());
        }
    }

    /** {@link #parse(String)}, plus {@code default}, checked against the model ({@link #check}). */
    public static ExpertSelection parse(String text, ModelConfig c) {
        ExpertSelection s = text != null && text.trim().equalsIgnoreCase("default") ? defaultFor(c) : parse(text);
        s.check(c);
        return s;
    }

    private static Rule rule(Kind kind, String value) {
        return switch (kind) {
            case TOP_K -> Rule.topK(Integer.parseInt(value.trim()));
            case THRESHOLD -> Rule.threshold(Double.parseDouble(value.trim()));
            case THRESHOLD_TOP_K -> Rule.thresholdTopK(Double.parseDouble(value.trim()));
            case DENSE -> Rule.DENSE;
        };
    }

    private static IllegalArgumentException bad(String text, String why) {
        return new IllegalArgumentException("unknown expert selection '" + text + "'"
                + (why.isEmpty() ? "" : " (" + why + ")") + "; accepted forms: " + FORMS);
    }

    /**
     * Checks the rules against a model: a top-K larger than a router's expert count is an error
     * (a layer type with one expert has no router and ignores its rule).
     */
    public ExpertSelection check(ModelConfig c) {
        if (attention.kind() == Kind.TOP_K && c.nAtt() > 1 && attention.k() > c.nAtt()) {
            throw new IllegalArgumentException("expert selection '" + this + "': top-k " + attention.k()
                    + " for attention exceeds num_attention_experts (" + c.nAtt() + ")");
        }
        if (mlp.kind() == Kind.TOP_K && c.nFfd() > 1 && mlp.k() > c.nFfd()) {
            throw new IllegalArgumentException("expert selection '" + this + "': top-k " + mlp.k()
                    + " for MLP exceeds num_mlp_experts (" + c.nFfd() + ")");
        }
        return this;
    }

    /** The canonical string form (parses back to an equal selection). */
    @Override
    public String toString() {
        if (attention.kind() == Kind.DENSE && mlp.kind() == Kind.DENSE) return "dense";
        if (attention.kind() == Kind.DENSE) return mlp.toString();
        if (attention.kind() == mlp.kind()) {
            return attention.kind().text + ":att=" + value(attention) + ",mlp=" + value(mlp);
        }
        if (mlp.kind() == Kind.DENSE) return attention.kind().text + ":att=" + value(attention);
        return "att " + attention + ", mlp " + mlp; // mixed kinds: programmatic only
    }

    private static String value(Rule r) {
        return r.kind() == Kind.TOP_K ? Integer.toString(r.k()) : fmt(r.epsilon());
    }

    private static String fmt(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e9 ? Long.toString((long) v) : Double.toString(v);
    }
}
