package dev.dsmoe.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TrainerTest {

    @TempDir
    Path dir;

    /** Random windows over a fixed token stream, each window a pure function of (seed, index). */
    static final class Windows implements BatchSource {
        final int[] tokens;
        final long seed;
        long pos;

        Windows(int[] tokens, long seed) {
            this.tokens = tokens;
            this.seed = seed;
        }

        @Override
        public void next(int[] input, int[] target, int batch, int seq) {
            for (int b = 0; b < batch; b++) {
                int start = new SplittableRandom(seed * 1_000_003L + pos * batch + b).nextInt(tokens.length - seq);
                for (int t = 0; t < seq; t++) {
                    input[b * seq + t] = tokens[start + t];
                    target[b * seq + t] = tokens[start + t + 1];
                }
            }
            pos++;
        }

        @Override
        public long position() { return pos; }

        @Override
        public void seek(long position) { pos = position; }
    }

    static ModelConfig tiny() {
        return ModelConfig.preset("dsmoe-small").withVocabSize(32).withDEmb(16).withNumLayers(2)
                .withAttention(2, 2, 2, 4).withMlp(4, 8).withMaxPositions(16).validate();
    }

    static int[] corpus() {
        int[] t = new int[400];
        for (int i = 0; i < t.length; i++) t[i] = (i * 7 + i / 13) % 32; // learnable, not constant
        return t;
    }

    static Trainer.Options options(long steps, long stopAfter) {
        return new Trainer.Options(2, 8, 2, 3e-3, 3e-4, 2, 0.01, 1.0, 42, steps, 0, 2, 3, 2, stopAfter);
    }

    private static List<String> lossLines(Path out) throws IOException {
        ObjectMapper om = new ObjectMapper();
        return Files.readAllLines(out.resolve(Trainer.METRICS)).stream().map(l -> {
            try {
                var j = om.readTree(l);
                return j.get("step").asLong() + ":" + j.get("loss").asText() + ":" + j.get("gradNorm").asText();
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        }).toList();
    }

    @Test
    void resumeIsBitIdentical() throws IOException {
        Path one = dir.resolve("one"), two = dir.resolve("two");
        Trainer a = Trainer.fresh(tiny(), options(7, 0), new Windows(corpus(), 1), new Windows(corpus(), 2), one, null, "test");
        a.run(new Trainer.Listener() {});

        Trainer b = Trainer.fresh(tiny(), options(7, 4), new Windows(corpus(), 1), new Windows(corpus(), 2), two, null, "test");
        b.run(new Trainer.Listener() {});
        assertEquals(4, b.step());
        Trainer c = Trainer.resume(two, options(7, 0), new Windows(corpus(), 1), new Windows(corpus(), 2), two, null, "test");
        c.run(new Trainer.Listener() {});

        assertEquals(7, c.step());
        assertEquals(lossLines(one), lossLines(two), "same losses and gradient norms, step by step");
        assertArrayEquals(a.params(), c.params(), "same final weights, bit for bit");
        ParamLayout layout = ParamLayout.of(tiny());
        assertArrayEquals(a.params(), ModelFiles.readParams(two, layout), "the checkpoint holds them");
    }

    @Test
    void resumeRefusesDifferentShapes() throws IOException {
        Path out = dir.resolve("r");
        Trainer.fresh(tiny(), options(2, 0), new Windows(corpus(), 1), null, out, null, "test").run(new Trainer.Listener() {});
        Trainer.Options other = new Trainer.Options(3, 8, 2, 3e-3, 3e-4, 2, 0.01, 1.0, 42, 4, 0, 2, 0, 2, 0);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Trainer.resume(out, other, new Windows(corpus(), 1), null, out, null, "test"));
        assertTrue(e.getMessage().contains("--batch 2"), e.getMessage());
    }

    @Test
    void trainingLowersTheLossAndWritesACompleteCheckpoint() throws IOException {
        Path out = dir.resolve("t");
        Trainer t = Trainer.fresh(tiny(), new Trainer.Options(4, 8, 1, 1e-2, 1e-3, 5, 0.01, 1.0, 3, 60, 0, 30, 30, 2, 0),
                new Windows(corpus(), 1), new Windows(corpus(), 2), out, null, "test");
        t.run(new Trainer.Listener() {});
        List<String> lines = Files.readAllLines(out.resolve(Trainer.METRICS));
        ObjectMapper om = new ObjectMapper();
        double first = om.readTree(lines.getFirst()).get("lmLoss").asDouble();
        double last = om.readTree(lines.getLast()).get("lmLoss").asDouble();
        assertTrue(last < first - 1.0, "loss " + first + " -> " + last);
        assertTrue(om.readTree(lines.getLast()).has("valLoss"));
        for (String f : List.of("config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json")) {
            assertTrue(Files.isRegularFile(out.resolve(f)), f);
        }
        assertEquals(tiny(), ModelFiles.readConfig(out));
    }

    @Test
    void scheduleWarmsUpLinearlyThenDecaysByCosine() {
        LrSchedule s = new LrSchedule(1.0, 0.1, 10, 110);
        assertEquals(0.1, s.lr(1), 1e-12);
        assertEquals(1.0, s.lr(10), 1e-12);
        assertEquals(0.55, s.lr(60), 1e-12);
        assertEquals(0.1, s.lr(110), 1e-12);
        assertEquals(0.1, s.lr(500), 1e-12);
    }
}
