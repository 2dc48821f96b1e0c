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
    void untimedSweepWritesTheTableCsvJsonAndAValidPng() throws IOException {
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
            Files.createDirectories(out);
            Files.writeString(out.resolve("sweep-speed.png"), "from an earlier, timed sweep");
            List<Path> files = Sweep.write(out, "tiny sweep", "tiny sweep: speed", points, false);
            assertEquals(List.of("sweep.md", "sweep.csv", "sweep.json", "sweep.png"),
                    files.stream().map(p -> p.getFileName().toString()).toList());
            String md = Files.readString(out.resolve("sweep.md"));
            assertTrue(md.contains("| threshold:0.48 | 0.48 |"), md);
            assertEquals(8, md.lines().count(), md); // title, blank line, header, rule, 4 rows
            assertTrue(!md.contains("decode"), "untimed: no decode columns\n" + md);
            assertTrue(Files.notExists(out.resolve("sweep-speed.png")), "an untimed sweep leaves no speed plot behind");
            List<String> csv = Files.readAllLines(out.resolve("sweep.csv"));
            assertEquals(5, csv.size());
            assertTrue(csv.get(1).startsWith("dense,,"), csv.get(1));
            assertTrue(csv.get(0).endsWith(",tokens_scored"), csv.get(0));
            JsonNode json = new ObjectMapper().readTree(out.resolve("sweep.json").toFile());
            assertEquals(4, json.size());
            assertTrue(json.get(0).get("epsilon").isNull());
            assertEquals(0.48, json.get(2).get("epsilon").asDouble(), 0);
            assertTrue(json.get(2).get("decode_tok_s") == null, "untimed: no decode fields");

            assertValidPng(out.resolve("sweep.png"));
            assertTrue(Files.list(out).noneMatch(p -> p.toString().endsWith(".tmp")), "no temporary files left");

            // with the MoA swept too, the attention experts thin out and the files get their own names
            List<Sweep.Point> att = Sweep.run(sel -> {
                e.setSelection(sel);
                return Perplexity.evaluate(e, shard, 24, -1, Perplexity.Progress.NONE);
            }, new double[] {1.5}, true);
            assertEquals("threshold:att=1.5,mlp=1.5", att.get(1).result().selection());
            assertTrue(att.get(1).result().stats().meanActiveAttention() < c.nAtt());
            Sweep.write(out, "tiny sweep, attention", "tiny sweep, attention: speed", att, true);
            assertTrue(Files.isRegularFile(out.resolve("sweep-attention.png")));
        }
    }

    /** Timed at each ε on the same engine: a decode tok/s per point, the speed-up over dense, a second plot. */
    @Test
    void timedSweepAddsDecodeSpeedColumnsFieldsAndASecondPlot() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        int[] tokens = EvalFixtures.randomTokens(120, c.vocabSize(), 11);
        try (InferenceModel m = EvalFixtures.model(c, 12); TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            Engine e = new Engine(m, ExpertSelection.dense());
            // perplexity alone, for the losses the timing must leave as they are
            List<Sweep.Point> untimed = Sweep.run(sel -> {
                e.setSelection(sel);
                return Perplexity.evaluate(e, shard, 24, -1, Perplexity.Progress.NONE);
            }, new double[] {0.48, 2}, false);

            DecodeSpeed speed = DecodeSpeed.fromShard(e, shard, 8, 6, 3, 0);
            long[] runs = {0, 0};
            List<Sweep.Point> points = Sweep.run(sel -> {
                e.setSelection(sel);
                return Perplexity.evaluate(e, shard, 24, -1, Perplexity.Progress.NONE);
            }, speed, (done, total, sec) -> {
                runs[0] = done;
                runs[1] = total;
            }, new double[] {2, 0.48}, false);
            assertEquals(3, points.size());
            assertEquals(runs[1], runs[0], "progress reaches its total");
            assertEquals(3 * 4, runs[0], "one warm-up round (0 s asked) and 3 timed rounds of the 3 points");
            for (int i = 0; i < points.size(); i++) {
                Sweep.Point p = points.get(i);
                assertTrue(p.timed());
                assertEquals(p.result().selection(), p.speed().selection());
                assertEquals(6, p.speed().decodeTokens());
                assertEquals(8, p.speed().promptTokens());
                assertTrue(p.decodeTokensPerSecond() > 0 && Double.isFinite(p.decodeTokensPerSecond()), p.toString());
                assertTrue(p.decodeVsDense() > 0 && Double.isFinite(p.decodeVsDense()), p.toString());
                assertEquals(p.decodeTokensPerSecond() / points.getFirst().decodeTokensPerSecond(), p.decodeVsDense(), 1e-12);
                assertEquals(untimed.get(i).result().sumNll(), p.result().sumNll(), 0);
            }
            assertEquals(1.0, points.getFirst().decodeVsDense(), 0);
            assertEquals(Sweep.selection(2, false).toString(), e.selection().toString(),
                    "the timing puts back the engine's selection (the last evaluation's)");
            // the engine scores as before the timing, bit for bit
            for (int i = 0; i < untimed.size(); i++) {
                e.setSelection(i == 0 ? ExpertSelection.dense() : Sweep.selection(untimed.get(i).epsilon(), false));
                assertEquals(untimed.get(i).result().sumNll(), Perplexity.evaluate(e, shard, 24, -1, Perplexity.Progress.NONE).sumNll(), 0);
            }

            Path out = dir.resolve("eval");
            List<Path> files = Sweep.write(out, "tiny sweep", "tiny sweep: decode speed", points, false);
            assertEquals(List.of("sweep.md", "sweep.csv", "sweep.json", "sweep.png", "sweep-speed.png"),
                    files.stream().map(p -> p.getFileName().toString()).toList());
            List<String> md = Files.readAllLines(out.resolve("sweep.md"));
            assertTrue(md.get(2).endsWith("| tokens scored | decode tok/s | decode vs dense |"), md.get(2));
            assertTrue(md.get(4).startsWith("| dense | dense |") && md.get(4).endsWith(" | 1.00 |"), md.get(4));
            assertEquals(md.get(2).chars().filter(ch -> ch == '|').count(), md.get(3).chars().filter(ch -> ch == '|').count());
            assertEquals(md.get(2).chars().filter(ch -> ch == '|').count(), md.get(6).chars().filter(ch -> ch == '|').count());
            assertTrue(md.getLast().startsWith("decode tok/s: single-stream decode of 6 tokens after a 8-token prompt"), md.getLast());
            List<String> csv = Files.readAllLines(out.resolve("sweep.csv"));
            assertTrue(csv.get(0).endsWith(",tokens_scored,decode_tok_s,decode_vs_dense"), csv.get(0));
            String[] cols = csv.get(2).split(",");
            assertEquals(11, cols.length, csv.get(2));
            assertTrue(Double.parseDouble(cols[9]) > 0, csv.get(2));
            JsonNode json = new ObjectMapper().readTree(out.resolve("sweep.json").toFile());
            for (JsonNode row : json) {
                double tps = row.get("decode_tok_s").asDouble();
                assertTrue(tps > 0 && Double.isFinite(tps), row.toString());
                assertTrue(row.get("decode_vs_dense").asDouble() > 0, row.toString());
                assertEquals(6, row.get("decode_tokens").asInt());
                assertEquals(8, row.get("decode_prompt_tokens").asInt());
                assertEquals(3, row.get("decode_repeats").asInt());
            }
            assertEquals(1.0, json.get(0).get("decode_vs_dense").asDouble(), 0);
            assertValidPng(out.resolve("sweep.png"));
            assertValidPng(out.resolve("sweep-speed.png"));
        }
    }

    /**
     * Several engines timed together (the quickstart's table): one result per subject, labelled,
     * round by round over all of them; each engine's selection put back; an engine whose context
     * cannot hold the runs refused before any run.
     */
    @Test
    void decodeSpeedTimesSeveralEnginesTogether() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        int[] tokens = EvalFixtures.randomTokens(60, c.vocabSize(), 5);
        try (InferenceModel a = EvalFixtures.model(c, 12); InferenceModel b = EvalFixtures.model(c, 13);
             TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            Engine ea = new Engine(a, ExpertSelection.dense()), eb = new Engine(b, ExpertSelection.dense());
            ExpertSelection thr = Sweep.selection(0.48, false);
            eb.setSelection(thr);
            DecodeSpeed speed = DecodeSpeed.fromShard(ea, shard, 8, 5, 2, 0);
            List<DecodeSpeed.Subject> subjects = List.of(new DecodeSpeed.Subject("a dense", ea, ExpertSelection.dense()),
                    new DecodeSpeed.Subject("b dense", eb, ExpertSelection.dense()), new DecodeSpeed.Subject("b threshold", eb, thr));
            long[] runs = {0, 0};
            List<DecodeSpeed.Result> r = speed.measureSubjects(subjects, (done, total, sec) -> {
                runs[0] = done;
                runs[1] = total;
            });
            assertEquals(List.of("a dense", "b dense", "b threshold"), r.stream().map(DecodeSpeed.Result::selection).toList());
            for (DecodeSpeed.Result x : r) {
                assertTrue(x.tokensPerSecond() > 0 && Double.isFinite(x.tokensPerSecond()), x.toString());
                assertEquals(5, x.decodeTokens());
                assertEquals(2, x.repeats());
            }
            assertEquals(3 * 3, runs[0], "one warm-up round and 2 timed rounds of the 3 subjects");
            assertEquals(runs[1], runs[0]);
            assertEquals(ExpertSelection.dense().toString(), ea.selection().toString());
            assertEquals(thr.toString(), eb.selection().toString(), "each engine's own selection put back");

            Engine small = new Engine(b, ExpertSelection.dense(), 12, Engine.DEFAULT_CHUNK);
            IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> speed.measureSubjects(
                    List.of(new DecodeSpeed.Subject("a", ea, ExpertSelection.dense()), new DecodeSpeed.Subject("short", small,
                            ExpertSelection.dense())), DecodeSpeed.Progress.NONE));
            assertTrue(ex.getMessage().startsWith("short: a prompt of 8 and 5 decoded tokens exceed the engine's context of 12"),
                    ex.getMessage());
        }
    }

    @Test
    void decodeSpeedChecksItsRunsFitTheContext() throws IOException {
        ModelConfig c = EvalFixtures.dsmoe();
        try (InferenceModel m = EvalFixtures.model(c, 12);
             TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), EvalFixtures.randomTokens(5, c.vocabSize(), 3))) {
            Engine e = new Engine(m, ExpertSelection.dense(), 16, Engine.DEFAULT_CHUNK);
            assertThrows(IllegalArgumentException.class, () -> DecodeSpeed.fromShard(e, shard, 10, 7, 1, 0));
            assertThrows(IllegalArgumentException.class, () -> DecodeSpeed.fromShard(e, shard, 0, 4, 1, 0));
            assertThrows(IllegalArgumentException.class, () -> DecodeSpeed.fromShard(e, shard, 4, 4, 0, 0));
            // a shard shorter than the runs is repeated
            DecodeSpeed s = DecodeSpeed.fromShard(e, shard, 10, 6, 1, 0);
            List<DecodeSpeed.Result> r = s.measure(List.of(ExpertSelection.dense()), DecodeSpeed.Progress.NONE);
            assertTrue(r.getFirst().tokensPerSecond() > 0);
        }
        assertEquals(DecodeSpeed.DEFAULT_DECODE, DecodeSpeed.defaultDecodeTokens(2048));
        assertEquals(16, DecodeSpeed.defaultDecodeTokens(32));
        assertEquals(16, DecodeSpeed.defaultPromptTokens(32, 16));
        assertEquals(DecodeSpeed.DEFAULT_PROMPT, DecodeSpeed.defaultPromptTokens(2048, 32));
    }

    static void assertValidPng(Path file) throws IOException {
        byte[] png = Files.readAllBytes(file);
        assertTrue(png.length > 1000, "non-empty PNG " + file);
        assertArrayEquals(PNG_SIGNATURE, Arrays.copyOf(png, 8));
        BufferedImage img = ImageIO.read(new ByteArrayInputStream(png));
        assertEquals(SweepPlot.WIDTH, img.getWidth());
        assertEquals(SweepPlot.HEIGHT, img.getHeight());
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
