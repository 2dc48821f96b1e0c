package dev.dsmoe.eval;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.io.IOException;
import java.util.List;
import java.util.function.Function;
import java.util.function.ToDoubleFunction;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * The PNGs of a {@link Sweep}: perplexity against active parameters per token ({@link #png}) and,
 * for a timed sweep, against measured decode tokens per second ({@link #speedPng}); one marker and
 * an ε label per threshold point, the dense reference as a separate red diamond. Renders headless
 * (sets {@code java.awt.headless=true} unless the JVM was told otherwise).
 */
public final class SweepPlot {

    static {
        if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
    }

    private SweepPlot() {}

    public static final int WIDTH = 900, HEIGHT = 600;

    /** Perplexity against active parameters per token, as PNG bytes. */
    public static byte[] png(String title, List<Sweep.Point> points, boolean attention) throws IOException {
        ToDoubleFunction<Sweep.Point> x = p -> p.result().stats().activeParamsPerToken();
        return png(title, "active parameters per token (non-embedding)", x, axisFormat(points, x, true), false, points, attention);
    }

    /**
     * Perplexity against measured decode tokens per second (a timed sweep's points), as PNG bytes.
     * The points are joined in ε order by a thin dashed line only: measured speeds are noisy, so
     * the line may turn back where the parameter plot's does not.
     */
    public static byte[] speedPng(String title, List<Sweep.Point> points, boolean attention) throws IOException {
        if (!Sweep.timed(points)) throw new IllegalArgumentException("the sweep was not timed");
        ToDoubleFunction<Sweep.Point> x = Sweep.Point::decodeTokensPerSecond;
        String unit = points.getFirst().speed().decodeTokens() + " tokens after a " + points.getFirst().speed().promptTokens()
                + "-token prompt";
        return png(title, "single-stream decode tokens/s (" + unit + ")", x, axisFormat(points, x, false), true, points, attention);
    }

    /** {@code measured}: x is a measurement (thin dashed line; legend top left, where fast and bad points are rare). */
    private static byte[] png(String title, String xTitle, ToDoubleFunction<Sweep.Point> xOf, Function<Double, String> xFormat,
                              boolean measured, List<Sweep.Point> points, boolean attention) throws IOException {
        XYChart chart = new XYChartBuilder().width(WIDTH).height(HEIGHT).title(title)
                .xAxisTitle(xTitle).yAxisTitle("validation perplexity").build();
        org.knowm.xchart.style.XYStyler s = chart.getStyler();
        chart.getStyler().setLegendPosition(measured ? Styler.LegendPosition.InsideNW : Styler.LegendPosition.InsideNE);
        chart.getStyler().setChartBackgroundColor(Color.WHITE);
        chart.getStyler().setPlotGridLinesVisible(true);
        chart.getStyler().setMarkerSize(9);
        chart.getStyler().setChartTitleFont(new Font(Font.SANS_SERIF, Font.BOLD, 16));
        chart.getStyler().setAxisTitleFont(new Font(Font.SANS_SERIF, Font.PLAIN, 14));
        chart.getStyler().setAxisTickLabelsFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        chart.getStyler().setLegendFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        chart.getStyler().setAnnotationTextFont(new Font(Font.SANS_SERIF, Font.PLAIN, 11));
        chart.getStyler().setxAxisTickLabelsFormattingFunction(xFormat);
        s.setToolTipsEnabled(false);

        List<Sweep.Point> sparse = points.stream().filter(p -> !p.dense()).toList();
        if (!sparse.isEmpty()) {
            double[] x = sparse.stream().mapToDouble(xOf).toArray();
            double[] y = sparse.stream().mapToDouble(p -> p.result().perplexity()).toArray();
            XYSeries series = chart.addSeries("threshold ε (" + (attention ? "MLP and MoA" : "MLP; MoA dense") + ")", x, y);
            series.setMarker(SeriesMarkers.CIRCLE);
            series.setLineColor(new Color(31, 119, 180));
            series.setMarkerColor(new Color(31, 119, 180));
            series.setLineStyle(measured ? new BasicStroke(1f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {4f, 4f}, 0f)
                    : new BasicStroke(2f));
            // ε labels just above their markers, leaving out those that would sit on an earlier label.
            double[] all = points.stream().mapToDouble(p -> p.result().perplexity()).toArray();
            double yMin = java.util.Arrays.stream(all).min().orElse(0), yMax = java.util.Arrays.stream(all).max().orElse(1);
            double xMin = java.util.Arrays.stream(x).min().orElse(0), xMax = java.util.Arrays.stream(x).max().orElse(1);
            double yr = Math.max(yMax - yMin, 1e-3 * Math.max(1, Math.abs(yMax))), xr = Math.max(xMax - xMin, 1e-9);
            s.setYAxisMin(yMin - 0.05 * yr);
            s.setYAxisMax(yMax + 0.1 * yr);
            java.util.List<double[]> placed = new java.util.ArrayList<>();
            for (int i = 0; i < x.length; i++) {
                double lx = x[i], ly = y[i] + 0.045 * yr;
                boolean clash = placed.stream().anyMatch(q -> Math.abs(q[0] - lx) < 0.06 * xr && Math.abs(q[1] - ly) < 0.04 * yr);
                if (clash) continue;
                placed.add(new double[] {lx, ly});
                chart.addAnnotation(new org.knowm.xchart.AnnotationText("ε=" + Sweep.fmt(sparse.get(i).epsilon()), lx, ly, false));
            }
        }
        for (Sweep.Point p : points) {
            if (!p.dense()) continue;
            XYSeries d = chart.addSeries("dense", new double[] {xOf.applyAsDouble(p)},
                    new double[] {p.result().perplexity()});
            d.setMarker(SeriesMarkers.DIAMOND);
            d.setMarkerColor(new Color(214, 39, 40));
            d.setXYSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Scatter);
        }
        return BitmapEncoder.getBitmapBytes(chart, BitmapEncoder.BitmapFormat.PNG);
    }

    /**
     * Tick labels with enough decimals to tell the ticks of a narrow range apart; in k or M when
     * {@code units} (parameter counts), plain numbers otherwise (tokens/s).
     */
    static Function<Double, String> axisFormat(List<Sweep.Point> points, ToDoubleFunction<Sweep.Point> x, boolean units) {
        double min = points.stream().mapToDouble(x).min().orElse(0);
        double max = points.stream().mapToDouble(x).max().orElse(0);
        double unit = !units ? 1 : max >= 1e6 ? 1e6 : max >= 1e3 ? 1e3 : 1;
        String suffix = unit == 1e6 ? "M" : unit == 1e3 ? "k" : "";
        double span = Math.max((max - min) / unit, 1e-9);
        int decimals = (int) Math.max(0, Math.min(4, Math.ceil(-Math.log10(span / 5))));
        String f = "%." + decimals + "f" + suffix;
        return v -> String.format(java.util.Locale.ROOT, f, v / unit);
    }
}
