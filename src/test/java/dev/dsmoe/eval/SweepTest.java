package dev.dsmoe.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.data.TokenShard;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.model.ModelConfig;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SweepTest {

    static final byte[] PNG_SIGNATURE = {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

    @TempDir
    Path dir;

    @Test
    void sweepWritesTheTableCsvJsonAndAValidPng() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        int[] tokens = EvalFixtures.randomTokens(120, c.vocabSize(), 11);
        try (InferenceModel m = EvalFixtures.model(c, 12); TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            Engine e = new Engine(m, ExpertSelection.dense());
            List<Sweep.Point> points = Sweep.run(sel -> {
                e.setSelection(sel);
                return Perplexity.evaluate(e, shard, 24, -1, Perplexity.Progress.NONE);
            }, new double[] {1.5, 0, 0.48}, false);
            assertEquals(4, points.size());
            assertTrue(points.getFirst().dense());
            assertEquals(List.of("dense", "threshold:0", "threshold:0.48", "threshold:1.5"),
                    points.stream().map(p -> p.result().selection()).toList());
            // ε = 0 keeps every expert: the dense loss
            assertEquals(points.get(0).result().loss(), points.get(1).result().loss(), 1e-6);
            // larger ε, fewer active MLP experts; MoA stays dense
            assertTrue(points.get(3).result().stats().meanActiveMlp() < points.get(1).result().stats().meanActiveMlp());
            assertEquals(c.nAtt(), points.get(3).result().stats().meanActiveAttention(), 0);

            Path out = dir.resolve("eval");
            List<Path> files = Sweep.write(out, "tiny sweep", points, false);
            assertEquals(List.of("sweep.md", "sweep.csv", "sweep.json", "sweep.png"),
                    files.stream().map(p -> p.getFileName().toString()).toList());
            String md = Files.readString(out.resolve("sweep.md"));
            assertTrue(md.contains("| threshold:0.48 | 0.48 |"), md);
            assertEquals(8, md.lines().count(), md); // title, blank line, header, rule, 4 rows
            List<String> csv = Files.readAllLines(out.resolve("sweep.csv"));
            assertEquals(5, csv.size());
            assertTrue(csv.get(1).startsWith("dense,,"), csv.get(1));
            JsonNode json = new ObjectMapper().readTree(out.resolve("sweep.json").toFile());
            assertEquals(4, json.size());
            assertTrue(json.get(0).get("epsilon").isNull());
            assertEquals(0.48, json.get(2).get("epsilon").asDouble(), 0);

            byte[] png = Files.readAllBytes(out.resolve("sweep.png"));
            assertTrue(png.length > 1000, "non-empty PNG");
            assertArrayEquals(PNG_SIGNATURE, Arrays.copyOf(png, 8));
            BufferedImage img = ImageIO.read(new ByteArrayInputStream(png));
            assertEquals(SweepPlot.WIDTH, img.getWidth());
            assertEquals(SweepPlot.HEIGHT, img.getHeight());
            assertTrue(Files.list(out).noneMatch(p -> p.toString().endsWith(".tmp")), "no temporary files left");

            // with the MoA swept too, the attention experts thin out and the files get their own names
            List<Sweep.Point> att = Sweep.run(sel -> {
                e.setSelection(sel);
                return Perplexity.evaluate(e, shard, 24, -1, Perplexity.Progress.NONE);
            }, new double[] {1.5}, true);
            assertEquals("threshold:att=1.5,mlp=1.5", att.get(1).result().selection());
            assertTrue(att.get(1).result().stats().meanActiveAttention() < c.nAtt());
            Sweep.write(out, "tiny sweep, attention", att, true);
            assertTrue(Files.isRegularFile(out.resolve("sweep-attention.png")));
        }
    }

    @Test
    void badEpsilonsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> Sweep.checkEps(new double[] {}));
        assertThrows(IllegalArgumentException.class, () -> Sweep.checkEps(new double[] {-0.1}));
        assertThrows(IllegalArgumentException.class, () -> Sweep.checkEps(new double[] {0.5, 0.5}));
        assertThrows(IllegalArgumentException.class, () -> Sweep.checkEps(new double[] {Double.NaN}));
        assertArrayEquals(new double[] {0, 0.5, 2}, Sweep.checkEps(new double[] {2, 0, 0.5}));
    }
}
