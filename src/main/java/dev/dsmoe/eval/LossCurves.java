package dev.dsmoe.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.lines.SeriesLines;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * Training curves from {@code metrics.jsonl} files: LM loss (a moving average over steps) and
 * validation loss against tokens seen, one series per run, as a PNG.
 */
public final class LossCurves {

    static {
        if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
    }

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Color[] COLORS = {new Color(31, 119, 180), new Color(255, 127, 14), new Color(44, 160, 44),
            new Color(214, 39, 40), new Color(148, 103, 189)};

    private LossCurves() {}

    /** One run's curve: tokens, smoothed LM loss, and the validation points. */
    public record Curve(String name, double[] tokens, double[] lmLoss, double[] valTokens, double[] valLoss) {}

    /** Reads a run's metrics.jsonl, smoothing the training loss over {@code window} steps. */
    public static Curve read(String name, Path metrics, int window) throws IOException {
        List<double[]> train = new ArrayList<>(), val = new ArrayList<>();
        for (String line : Files.readAllLines(metrics)) {
            if (line.isBlank()) continue;
            JsonNode j = JSON.readTree(line);
            double tok = j.path("tokens").asDouble();
            train.add(new double[] {tok, j.path("lmLoss").asDouble()});
            if (j.has("valLoss") && j.get("valLoss").isNumber()) val.add(new double[] {tok, j.get("valLoss").asDouble()});
        }
        double[] t = new double[train.size()], l = new double[train.size()];
        double sum = 0;
        for (int i = 0; i < train.size(); i++) {
            sum += train.get(i)[1];
            if (i >= window) sum -= train.get(i - window)[1];
            t[i] = train.get(i)[0];
            l[i] = sum / Math.min(i + 1, window);
        }
        return new Curve(name, t, l, val.stream().mapToDouble(v -> v[0]).toArray(), val.stream().mapToDouble(v -> v[1]).toArray());
    }

    /** The curves as PNG bytes. */
    public static byte[] png(String title, List<Curve> curves) throws IOException {
        XYChart chart = new XYChartBuilder().width(900).height(600).title(title)
                .xAxisTitle("training tokens").yAxisTitle("loss (nats/token)").build();
        chart.getStyler().setLegendPosition(Styler.LegendPosition.InsideNE);
        chart.getStyler().setChartBackgroundColor(Color.WHITE);
        chart.getStyler().setChartTitleFont(new Font(Font.SANS_SERIF, Font.BOLD, 16));
        chart.getStyler().setAxisTitleFont(new Font(Font.SANS_SERIF, Font.PLAIN, 14));
        chart.getStyler().setLegendFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        chart.getStyler().setToolTipsEnabled(false);
        // Ticks at round token counts from 0, labelled 80k or 1.2M. XChart puts the ticks on the
        // data's x values when those are equally spaced (one point per step here), labelled like
        // 1.18784E5 and running into each other; an invisible series from 0 to the last token count
        // breaks that spacing, so XChart picks round steps.
        chart.getStyler().setXAxisMin(0.0);
        chart.getStyler().setXAxisTickMarkSpacingHint(100);
        chart.getStyler().setxAxisTickLabelsFormattingFunction(LossCurves::tokens);
        double xMax = curves.stream().flatMapToDouble(c -> Arrays.stream(c.tokens())).max().orElse(0);
        double y0 = curves.stream().filter(c -> c.lmLoss().length > 0).mapToDouble(c -> c.lmLoss()[0]).findFirst().orElse(0);
        XYSeries range = chart.addSeries(" ", new double[] {0, xMax}, new double[] {y0, y0});
        range.setMarker(SeriesMarkers.NONE);
        range.setLineStyle(SeriesLines.NONE);
        range.setShowInLegend(false);
        Map<String, Integer> color = new LinkedHashMap<>();
        for (Curve c : curves) {
            if (c.tokens().length == 0) continue;
            Color col = COLORS[color.computeIfAbsent(c.name(), k -> color.size()) % COLORS.length];
            XYSeries s = chart.addSeries(c.name() + " train (moving average)", c.tokens(), c.lmLoss());
            s.setMarker(SeriesMarkers.NONE);
            s.setLineColor(col);
            s.setLineStyle(new BasicStroke(1.6f));
            if (c.valTokens().length > 0) {
                XYSeries v = chart.addSeries(c.name() + " validation", c.valTokens(), c.valLoss());
                v.setMarker(SeriesMarkers.CIRCLE);
                v.setMarkerColor(col);
                v.setLineColor(col);
                v.setLineStyle(new BasicStroke(1f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {6f, 4f}, 0f));
            }
        }
        return BitmapEncoder.getBitmapBytes(chart, BitmapEncoder.BitmapFormat.PNG);
    }

    /** A token count as an axis label: {@code 500}, {@code 80k}, {@code 2.5k}, {@code 1.2M}. */
    static String tokens(double n) {
        double a = Math.abs(n), unit = a >= 1e6 ? 1e6 : a >= 1e3 ? 1e3 : 1;
        String digits = new BigDecimal(String.format(Locale.ROOT, "%.2f", n / unit)).stripTrailingZeros().toPlainString();
        return digits + (unit == 1e6 ? "M" : unit == 1e3 ? "k" : "");
    }
}
