package dev.dsmoe.bench;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * The PNG of batched decode: aggregate tokens/s against the batch size B (log-log), one line per
 * (model, selection). Renders headless.
 */
public final class BatchPlot {

    static {
        if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
    }

    private BatchPlot() {}

    public static byte[] png(String title, List<InferenceBenchmarks.BatchRow> rows) throws IOException {
        XYChart chart = new XYChartBuilder().width(900).height(600).title(title)
                .xAxisTitle("sequences decoded together (B)").yAxisTitle("aggregate decode tokens/s").build();
        org.knowm.xchart.style.XYStyler s = chart.getStyler();
        s.setLegendPosition(Styler.LegendPosition.InsideNW);
        s.setChartBackgroundColor(Color.WHITE);
        s.setPlotGridLinesVisible(true);
        s.setMarkerSize(8);
        s.setChartTitleFont(new Font(Font.SANS_SERIF, Font.BOLD, 16));
        s.setAxisTitleFont(new Font(Font.SANS_SERIF, Font.PLAIN, 14));
        s.setLegendFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        s.setXAxisLogarithmic(true);
        s.setYAxisLogarithmic(true);
        // ticks between the decades too: a run whose rates all fall within one decade (15-66 tok/s on a
        // Zen 4) otherwise drew a y axis without a single label
        s.setXAxisLogarithmicDecadeOnly(false);
        s.setYAxisLogarithmicDecadeOnly(false);
        Map<String, List<InferenceBenchmarks.BatchRow>> lines = new LinkedHashMap<>();
        for (InferenceBenchmarks.BatchRow r : rows) {
            lines.computeIfAbsent(r.model() + " " + r.selection(), k -> new java.util.ArrayList<>()).add(r);
        }
        for (var line : lines.entrySet()) {
            double[] x = line.getValue().stream().mapToDouble(InferenceBenchmarks.BatchRow::batch).toArray();
            double[] y = line.getValue().stream().mapToDouble(InferenceBenchmarks.BatchRow::aggregateTokensPerSecond).toArray();
            XYSeries series = chart.addSeries(line.getKey(), x, y);
            series.setMarker(SeriesMarkers.CIRCLE);
            series.setLineStyle(new BasicStroke(2f));
        }
        return BitmapEncoder.getBitmapBytes(chart, BitmapEncoder.BitmapFormat.PNG);
    }
}
