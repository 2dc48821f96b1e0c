package dev.dsmoe.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
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
        return ModelPresets.get("dsmoe-small").toBuilder().vocabSize(32).dEmb(16).numLayers(2)
                .nAtt(2).nHead(2).nKv(2).dAtt(4).nFfd(4).dFfd(8).maxPositions(16).build().validate();
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
        Trainer a = Trainer.fresh(tiny(), options(7, 0), new Windows(corpus(), 1), new Windows(corpus(), 2), one, null, "test", "fp");
        a.run(new Trainer.Listener() {});

        Trainer b = Trainer.fresh(tiny(), options(7, 4), new Windows(corpus(), 1), new Windows(corpus(), 2), two, null, "test", "fp");
        b.run(new Trainer.Listener() {});
        assertEquals(4, b.step());
        Trainer c = Trainer.resume(two, options(7, 0), new Windows(corpus(), 1), new Windows(corpus(), 2), two, null, "test", "fp");
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
        Trainer.fresh(tiny(), options(2, 0), new Windows(corpus(), 1), null, out, null, "test", "fp").run(new Trainer.Listener() {});
        Trainer.Options other = new Trainer.Options(3, 8, 2, 3e-3, 3e-4, 2, 0.01, 1.0, 42, 4, 0, 2, 0, 2, 0);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Trainer.resume(out, other, new Windows(corpus(), 1), null, out, null, "test", "fp"));
        assertTrue(e.getMessage().contains("--batch 2"), e.getMessage());
    }

    @Test
    void trainingLowersTheLossAndWritesACompleteCheckpoint() throws IOException {
        Path out = dir.resolve("t");
        Trainer t = Trainer.fresh(tiny(), new Trainer.Options(4, 8, 1, 1e-2, 1e-3, 5, 0.01, 1.0, 3, 60, 0, 30, 30, 2, 0),
                new Windows(corpus(), 1), new Windows(corpus(), 2), out, null, "test", "fp");
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

    /** A planned schedule computes exactly the warm-up + cosine formula it always did, so old runs resume bit-identically. */
    @Test
    void aPlannedScheduleIsTheClassicFormulaBitForBit() {
        LrSchedule s = new LrSchedule(3e-3, 3e-4, 7, 100);
        for (long step = 8; step < 100; step++) {
            double progress = (double) (step - 7) / Math.max(1, 100 - 7);
            assertEquals(3e-4 + 0.5 * (3e-3 - 3e-4) * (1 + Math.cos(Math.PI * progress)), s.lr(step), 0.0, "step " + step);
        }
    }

    @Test
    void anExtendedScheduleKeepsItsPhase() {
        LrSchedule s = new LrSchedule(1.0, 0.1, 10, 110);
        LrSchedule e = s.extendedTo(60, 210);
        assertEquals(s.lr(60), e.lr(60), 1e-12, "the rate at the resume point is unchanged");
        assertEquals(0.5, e.progress(60), 1e-12);
        assertEquals(0.75, e.progress(135), 1e-12, "the second half of the cosine stretched over the 150 steps left");
        for (long step = 61; step <= 210; step++) assertTrue(e.lr(step) < e.lr(step - 1), "falls at " + step);
        assertTrue(s.lr(60) - e.lr(61) < s.lr(59) - s.lr(60), "more slowly than before: no jump");
        assertEquals(0.1, e.lr(210), 1e-12);
        assertEquals(new LrSchedule(1.0, 0.1, 10, 210), s.extendedTo(4, 210), "during the warm-up: planned for the new total");
        assertEquals(0.1, s.extendedTo(110, 150).lr(120), 1e-12, "a finished run continues at the minimum");
        LrSchedule twice = e.extendedTo(135, 360);
        assertEquals(e.lr(135), twice.lr(135), 1e-12);
        assertEquals(0.1, twice.lr(360), 1e-12);
        assertThrows(IllegalArgumentException.class, () -> s.extendedTo(60, 110));
    }

    @Test
    void aLargerBudgetExtendsTheRunAndIsRecorded() throws IOException {
        Path out = dir.resolve("x");
        Trainer.fresh(tiny(), options(6, 3), new Windows(corpus(), 1), null, out, null, "test", "fp").run(new Trainer.Listener() {});
        Trainer t = Trainer.resume(out, options(9, 0), new Windows(corpus(), 1), null, out, null, "test", "fp");
        t.run(new Trainer.Listener() {});
        TrainerState s = TrainerState.fromJson(Files.readString(out.resolve(TrainerState.FILE)));
        assertEquals(9, s.step());
        assertEquals(List.of(new TrainerState.Budget(0, "--steps 6", 6), new TrainerState.Budget(3, "--steps 9", 9)), s.budgets());
        assertEquals(3, s.cosineFromStep());
        assertEquals(0.25, s.cosineFromProgress(), 1e-12, "warm-up 2, cosine over steps 2..6: step 3 is a quarter in");
        assertEquals("fp", s.dataFingerprint());
        assertEquals(Parallel.threads(), s.threads());

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Trainer.resume(out, options(8, 0), new Windows(corpus(), 1), null, out, null, "test", "fp"));
        assertTrue(e.getMessage().contains("would shorten the run's 9 steps"), e.getMessage());
    }

    @Test
    void aTimeBudgetCountsTheTimeSpentAndMustExtendTheRun() throws IOException {
        Path out = dir.resolve("m");
        Trainer.fresh(tiny(), options(2, 0), new Windows(corpus(), 1), null, out, null, "test", "fp").run(new Trainer.Listener() {});
        byte[] metrics = Files.readAllBytes(out.resolve(Trainer.METRICS));
        Trainer.Options tooShort = new Trainer.Options(2, 8, 2, 3e-3, 3e-4, 2, 0.01, 1.0, 42, 0, 1e-6, 2, 3, 2, 0);
        Trainer t = Trainer.resume(out, tooShort, new Windows(corpus(), 1), null, out, null, "test", "fp");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.run(new Trainer.Listener() {}));
        assertTrue(e.getMessage().contains("does not extend the run"), e.getMessage());
        assertArrayEquals(metrics, Files.readAllBytes(out.resolve(Trainer.METRICS)), "nothing written");
        assertEquals(2, TrainerState.fromJson(Files.readString(out.resolve(TrainerState.FILE))).step());
    }

    @Test
    void resumeRefusesOtherDataOrAnotherThreadCount() throws IOException {
        Path out = dir.resolve("d");
        Trainer.fresh(tiny(), options(2, 0), new Windows(corpus(), 1), null, out, null, "test", "fp").run(new Trainer.Listener() {});
        IllegalArgumentException data = assertThrows(IllegalArgumentException.class,
                () -> Trainer.resume(out, options(2, 0), new Windows(corpus(), 1), null, out, null, "test", "other"));
        assertTrue(data.getMessage().contains("trained on other data"), data.getMessage());
        int threads = Parallel.threads();
        try {
            Parallel.setThreads(threads + 1);
            IllegalArgumentException t = assertThrows(IllegalArgumentException.class,
                    () -> Trainer.resume(out, options(2, 0), new Windows(corpus(), 1), null, out, null, "test", "fp"));
            assertTrue(t.getMessage().contains("on " + threads + " threads"), t.getMessage());
        } finally {
            Parallel.setThreads(threads);
        }
    }
}
