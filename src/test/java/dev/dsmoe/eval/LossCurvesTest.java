package dev.dsmoe.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LossCurvesTest {

    @TempDir
    Path dir;

    @Test
    void tokenLabelsArePlainKilosAndMillions() {
        assertEquals("0", LossCurves.tokens(0));
        assertEquals("500", LossCurves.tokens(500));
        assertEquals("2.5k", LossCurves.tokens(2500));
        assertEquals("80k", LossCurves.tokens(80_000));
        assertEquals("500k", LossCurves.tokens(500_000));
        assertEquals("1M", LossCurves.tokens(1_000_000));
        assertEquals("1.2M", LossCurves.tokens(1_200_000));
        assertEquals("1.25M", LossCurves.tokens(1_250_000));
    }

    /** 97 steps of 2048 tokens, validation every 19: the shape whose axis read "7.9872E4 1.18784E51.57696E5". */
    @Test
    void readsMetricsAndRendersAPng() throws Exception {
        StringBuilder sb = new StringBuilder();
        for (int s = 1; s <= 97; s++) {
            sb.append("{\"step\":").append(s).append(",\"tokens\":").append(2048L * s).append(",\"lmLoss\":")
                    .append(9 * Math.exp(-s / 97.0)).append(s % 19 == 0 ? ",\"valLoss\":" + (9 * Math.exp(-s / 97.0) + 0.1) : "")
                    .append("}\n");
        }
        Path metrics = dir.resolve("metrics.jsonl");
        Files.writeString(metrics, sb);
        LossCurves.Curve c = LossCurves.read("dense-small", metrics, 20);
        assertEquals(97, c.tokens().length);
        assertEquals(5, c.valTokens().length);
        byte[] png = LossCurves.png("training loss", List.of(c));
        BufferedImage img = ImageIO.read(new ByteArrayInputStream(png));
        assertEquals(900, img.getWidth());
        assertEquals(600, img.getHeight());
        String out = System.getProperty("dsmoe.plot.out"); // to look at it: -Ddsmoe.plot.out=/tmp/loss_curves.png
        if (out != null) Files.write(Path.of(out), png);
    }
}
