package dev.dsmoe.eval;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.io.AtomicFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * A sparsity sweep: perplexity against active parameters per token as the threshold ε of the
 * Threshold selection (METHOD section 5) grows, on the MLP routers (MoA dense, as the paper), or
 * on both MLP and MoA routers, and, when timed, against measured single-stream decode speed
 * ({@link DecodeSpeed}) on the same model: the quality/speed curve a threshold is picked from.
 * The dense selection is the reference point. Writes a Markdown table, CSV, JSON and PNG plots
 * ({@link SweepPlot}).
 */
public final class Sweep {

    private Sweep() {}

    /** The default ε values (0.48 is the paper's). */
    public static final double[] DEFAULT_EPS = {0, 0.1, 0.2, 0.3, 0.48, 0.6, 0.8, 1.0, 1.5, 2.0};

    /**
     * One point: ε (NaN for the dense reference), its perplexity evaluation and, when the sweep
     * is timed, its decode speed and that speed over the dense reference's (else null and NaN).
     */
    public record Point(double epsilon, Perplexity.Result result, DecodeSpeed.Result speed, double decodeVsDense) {
        /** An untimed point. */
        public Point(double epsilon, Perplexity.Result result) {
            this(epsilon, result, null, Double.NaN);
        }

        public boolean dense() {
            return Double.isNaN(epsilon);
        }

        public boolean timed() {
            return speed != null;
        }

        /** Decoded tokens per second (NaN when untimed). */
        public double decodeTokensPerSecond() {
            return speed == null ? Double.NaN : speed.tokensPerSecond();
        }

        /** The figures as a flat JSON-ready map; the {@code decode_} keys only when timed. */
        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("epsilon", dense() ? null : epsilon);
            m.putAll(result.toMap());
            if (timed()) {
                m.put("decode_tok_s", speed.tokensPerSecond());
                m.put("decode_vs_dense", decodeVsDense);
                m.put("decode_tokens", speed.decodeTokens());
                m.put("decode_prompt_tokens", speed.promptTokens());
                m.put("decode_repeats", speed.repeats());
            }
            return m;
        }
    }

    /** The threshold selection of one ε: MLP only, or MLP and MoA. */
    public static ExpertSelection selection(double epsilon, boolean attention) {
        ExpertSelection.Rule r = ExpertSelection.Rule.threshold(epsilon);
        return new ExpertSelection(attention ? r : ExpertSelection.Rule.DENSE, r);
    }

    /** Checks and sorts ε values (each finite and >= 0, no repeats). */
    public static double[] checkEps(double[] eps) {
        if (eps == null || eps.length == 0) throw new IllegalArgumentException("--eps needs at least one value");
        double[] e = eps.clone();
        Arrays.sort(e);
        for (int i = 0; i < e.length; i++) {
            if (!(e[i] >= 0 && e[i] < Double.POSITIVE_INFINITY)) {
                throw new IllegalArgumentException("--eps values must be finite and >= 0, got " + e[i]);
            }
            if (i > 0 && e[i] == e[i - 1]) throw new IllegalArgumentException("--eps lists " + e[i] + " twice");
        }
        return e;
    }

    /** Runs the dense reference, then each ε in ascending order, through {@code evaluate} (untimed). */
    public static List<Point> run(Function<ExpertSelection, Perplexity.Result> evaluate, double[] eps, boolean attention) {
        return run(evaluate, null, DecodeSpeed.Progress.NONE, eps, attention);
    }

    /**
     * Runs the dense reference, then each ε in ascending order, through {@code evaluate}; then,
     * unless {@code speed} is null, times decode under all of them together (its rounds visit
     * every point, so the points are timed in one sitting).
     */
    public static List<Point> run(Function<ExpertSelection, Perplexity.Result> evaluate, DecodeSpeed speed,
                                  DecodeSpeed.Progress progress, double[] eps, boolean attention) {
        double[] e = checkEps(eps);
        List<Double> epsilons = new ArrayList<>();
        List<ExpertSelection> selections = new ArrayList<>();
        epsilons.add(Double.NaN);
        selections.add(ExpertSelection.dense());
        for (double v : e) {
            epsilons.add(v);
            selections.add(selection(v, attention));
        }
        List<Perplexity.Result> results = new ArrayList<>();
        for (ExpertSelection s : selections) results.add(evaluate.apply(s));
        List<DecodeSpeed.Result> speeds = speed == null ? null : speed.measure(selections, progress);
        List<Point> points = new ArrayList<>();
        for (int i = 0; i < selections.size(); i++) {
            points.add(speeds == null ? new Point(epsilons.get(i), results.get(i)) : new Point(epsilons.get(i), results.get(i),
                    speeds.get(i), speeds.get(i).tokensPerSecond() / speeds.getFirst().tokensPerSecond()));
        }
        return points;
    }

    /** Base name of the output files: {@code sweep} (MLP) or {@code sweep-attention} (MLP and MoA). */
    public static String baseName(boolean attention) {
        return attention ? "sweep-attention" : "sweep";
    }

    /** The second plot's file name: {@code BASE-speed.png}, perplexity against decode tokens/s. */
    public static String speedPlotName(boolean attention) {
        return baseName(attention) + "-speed.png";
    }

    /** Whether the points carry decode speeds (a timed sweep). */
    public static boolean timed(List<Point> points) {
        return !points.isEmpty() && points.stream().allMatch(Point::timed);
    }

    /**
     * Writes {@code BASE.md}, {@code BASE.csv}, {@code BASE.json} and {@code BASE.png} into
     * {@code dir} (created if needed; each file replaced atomically), and for a timed sweep
     * {@code BASE-speed.png} (titled {@code speedTitle}; an untimed sweep deletes an earlier one),
     * and returns their paths.
     */
    public static List<Path> write(Path dir, String title, String speedTitle, List<Point> points, boolean attention)
            throws IOException {
        Files.createDirectories(dir);
        String base = baseName(attention);
        Path md = dir.resolve(base + ".md"), csv = dir.resolve(base + ".csv"), json = dir.resolve(base + ".json"),
                png = dir.resolve(base + ".png"), speedPng = dir.resolve(speedPlotName(attention));
        String note = speedNote(points);
        AtomicFiles.writeString(md, "# " + title + "\n\n" + markdown(points, attention) + (note.isEmpty() ? "" : "\n" + note + "\n"));
        AtomicFiles.writeString(csv, csv(points));
        List<Map<String, Object>> rows = points.stream().map(Point::toMap).toList();
        String js = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(rows)
                .replace("NaN", "null");
        AtomicFiles.writeString(json, js + "\n");
        writePng(png, SweepPlot.png(title, points, attention));
        if (!timed(points)) {
            Files.deleteIfExists(speedPng);
            return List.of(md, csv, json, png);
        }
        writePng(speedPng, SweepPlot.speedPng(speedTitle, points, attention));
        return List.of(md, csv, json, png, speedPng);
    }

    private static void writePng(Path file, byte[] image) throws IOException {
        AtomicFiles.write(file, ch -> {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(image);
            while (b.hasRemaining()) ch.write(b);
        });
    }

    /**
     * The Markdown table of the points; a timed sweep adds the columns {@code decode tok/s} and
     * {@code decode vs dense}.
     */
    public static String markdown(List<Point> points, boolean attention) {
        boolean timed = timed(points);
        StringBuilder sb = new StringBuilder();
        sb.append("| selection | ε (").append(attention ? "MLP and MoA" : "MLP; MoA dense").append(") | loss | perplexity "
                + "| MoA active | MLP active | active params/token | active hidden % | tokens scored |")
                .append(timed ? " decode tok/s | decode vs dense |\n" : "\n");
        sb.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|").append(timed ? "---:|---:|\n" : "\n");
        for (Point p : points) {
            Perplexity.Result r = p.result();
            sb.append(String.format(Locale.ROOT, "| %s | %s | %.4f | %.3f | %.2f | %.2f | %s | %.1f | %d |",
                    r.selection(), p.dense() ? "dense" : fmt(p.epsilon()), r.loss(), r.perplexity(),
                    r.stats().meanActiveAttention(), r.stats().meanActiveMlp(), params(r.stats().activeParamsPerToken()),
                    r.stats().activeHiddenPercent(), r.tokensScored()));
            if (timed) sb.append(String.format(Locale.ROOT, " %.1f | %.2f |", p.decodeTokensPerSecond(), p.decodeVsDense()));
            sb.append('\n');
        }
        return sb.toString();
    }

    /** What the decode columns measured, in a sentence; empty for an untimed sweep. */
    public static String speedNote(List<Point> points) {
        if (!timed(points)) return "";
        return "decode tok/s: " + points.getFirst().speed().describe() + "; decode vs dense: that speed over the dense row's.";
    }

    static String csv(List<Point> points) {
        boolean timed = timed(points);
        StringBuilder sb = new StringBuilder("selection,epsilon,loss,perplexity,mean_active_attention,mean_active_mlp,"
                + "active_params_per_token,active_hidden_percent,tokens_scored" + (timed ? ",decode_tok_s,decode_vs_dense\n" : "\n"));
        for (Point p : points) {
            Perplexity.Result r = p.result();
            sb.append(String.format(Locale.ROOT, "%s,%s,%.6f,%.6f,%.4f,%.4f,%.1f,%.3f,%d", r.selection(),
                    p.dense() ? "" : fmt(p.epsilon()), r.loss(), r.perplexity(), r.stats().meanActiveAttention(),
                    r.stats().meanActiveMlp(), r.stats().activeParamsPerToken(), r.stats().activeHiddenPercent(),
                    r.tokensScored()));
            if (timed) sb.append(String.format(Locale.ROOT, ",%.3f,%.4f", p.decodeTokensPerSecond(), p.decodeVsDense()));
            sb.append('\n');
        }
        return sb.toString();
    }

    /** A parameter count with a unit (k, M, B). */
    public static String params(double n) {
        if (Double.isNaN(n)) return "-";
        if (n >= 1e9) return String.format(Locale.ROOT, "%.2fB", n / 1e9);
        if (n >= 1e6) return String.format(Locale.ROOT, "%.2fM", n / 1e6);
        if (n >= 1e3) return String.format(Locale.ROOT, "%.1fk", n / 1e3);
        return String.format(Locale.ROOT, "%.0f", n);
    }

    static String fmt(double v) {
        return v == Math.rint(v) ? String.format(Locale.ROOT, "%.1f", v) : Double.toString(v);
    }
}
