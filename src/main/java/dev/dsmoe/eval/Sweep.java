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
 * on both MLP and MoA routers. The dense selection is the reference point. Writes a Markdown
 * table, CSV, JSON and a PNG plot ({@link SweepPlot}).
 */
public final class Sweep {

    private Sweep() {}

    /** The default ε values (0.48 is the paper's). */
    public static final double[] DEFAULT_EPS = {0, 0.1, 0.2, 0.3, 0.48, 0.6, 0.8, 1.0, 1.5, 2.0};

    /** One point: ε (NaN for the dense reference) and its perplexity evaluation. */
    public record Point(double epsilon, Perplexity.Result result) {
        public boolean dense() {
            return Double.isNaN(epsilon);
        }

        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("epsilon", dense() ? null : epsilon);
            m.putAll(result.toMap());
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

    /** Runs the dense reference, then each ε in ascending order, through {@code evaluate}. */
    public static List<Point> run(Function<ExpertSelection, Perplexity.Result> evaluate, double[] eps, boolean attention) {
        double[] e = checkEps(eps);
        List<Point> points = new ArrayList<>();
        points.add(new Point(Double.NaN, evaluate.apply(ExpertSelection.dense())));
        for (double v : e) points.add(new Point(v, evaluate.apply(selection(v, attention))));
        return points;
    }

    /** Base name of the output files: {@code sweep} (MLP) or {@code sweep-attention} (MLP and MoA). */
    public static String baseName(boolean attention) {
        return attention ? "sweep-attention" : "sweep";
    }

    /**
     * Writes {@code BASE.md}, {@code BASE.csv}, {@code BASE.json} and {@code BASE.png} into
     * {@code dir} (created if needed; each file replaced atomically) and returns their paths.
     */
    public static List<Path> write(Path dir, String title, List<Point> points, boolean attention) throws IOException {
        Files.createDirectories(dir);
        String base = baseName(attention);
        Path md = dir.resolve(base + ".md"), csv = dir.resolve(base + ".csv"), json = dir.resolve(base + ".json"),
                png = dir.resolve(base + ".png");
        AtomicFiles.writeString(md, "# " + title + "\n\n" + markdown(points, attention));
        AtomicFiles.writeString(csv, csv(points));
        List<Map<String, Object>> rows = points.stream().map(Point::toMap).toList();
        String js = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(rows)
                .replace("NaN", "null");
        AtomicFiles.writeString(json, js + "\n");
        byte[] image = SweepPlot.png(title, points, attention);
        AtomicFiles.write(png, ch -> {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(image);
            while (b.hasRemaining()) ch.write(b);
        });
        return List.of(md, csv, json, png);
    }

    /** The Markdown table of the points. */
    public static String markdown(List<Point> points, boolean attention) {
        StringBuilder sb = new StringBuilder();
        sb.append("| selection | ε (").append(attention ? "MLP and MoA" : "MLP; MoA dense").append(") | loss | perplexity "
                + "| MoA active | MLP active | active params/token | active hidden % | tokens scored |\n");
        sb.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Point p : points) {
            Perplexity.Result r = p.result();
            sb.append(String.format(Locale.ROOT, "| %s | %s | %.4f | %.3f | %.2f | %.2f | %s | %.1f | %d |%n",
                    r.selection(), p.dense() ? "dense" : fmt(p.epsilon()), r.loss(), r.perplexity(),
                    r.stats().meanActiveAttention(), r.stats().meanActiveMlp(), params(r.stats().activeParamsPerToken()),
                    r.stats().activeHiddenPercent(), r.tokensScored()));
        }
        return sb.toString();
    }

    static String csv(List<Point> points) {
        StringBuilder sb = new StringBuilder("selection,epsilon,loss,perplexity,mean_active_attention,mean_active_mlp,"
                + "active_params_per_token,active_hidden_percent,tokens_scored\n");
        for (Point p : points) {
            Perplexity.Result r = p.result();
            sb.append(String.format(Locale.ROOT, "%s,%s,%.6f,%.6f,%.4f,%.4f,%.1f,%.3f,%d%n", r.selection(),
                    p.dense() ? "" : fmt(p.epsilon()), r.loss(), r.perplexity(), r.stats().meanActiveAttention(),
                    r.stats().meanActiveMlp(), r.stats().activeParamsPerToken(), r.stats().activeHiddenPercent(),
                    r.tokensScored()));
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
