package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.io.CheckpointFiles;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.train.TrainerState;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ./dsmoe train} end to end on a tiny prepared corpus. */
class TrainCommandTest {

    @TempDir
    static Path shared;
    static Path data;

    @TempDir
    Path dir;

    /** A tiny DS-MoE that trains in milliseconds per step. */
    static final String[] TINY = {"--preset", "dsmoe-small", "--hidden-size", "32", "--num-hidden-layers", "1",
            "--num-attention-experts", "2", "--num-heads-per-expert", "2", "--num-key-value-heads", "2", "--head-dim", "8",
            "--num-mlp-experts", "4", "--expert-intermediate-size", "16", "--max-position-embeddings", "32",
            "--seq", "16", "--batch", "2"};

    @BeforeAll
    static void prepare() throws IOException {
        data = prepareData(shared);
    }

    /** Prepares the tiny test corpus (vocabulary 300) under {@code dir}; returns the data directory. */
    static Path prepareData(Path dir) throws IOException {
        Path src = PrepareCommandTest.corpus(dir);
        Path out = dir.resolve("data");
        PrepareCommandTest.Run r = PrepareCommandTest.run("prepare", "--input", src.toString(), "--out", out.toString(),
                "--vocab-size", "300", "--val-fraction", "0.3");
        assertEquals(0, r.status(), r.err());
        return out;
    }

    static String[] args(String... extra) {
        return argsFor(data, extra);
    }

    /** {@code train --data DATA} with the tiny model's options and {@code extra}. */
    static String[] argsFor(Path data, String... extra) {
        List<String> a = new ArrayList<>(List.of("train", "--data", data.toString()));
        a.addAll(List.of(TINY));
        a.addAll(List.of(extra));
        return a.toArray(String[]::new);
    }

    static void assertOneLineError(PrepareCommandTest.Run r, String expected) {
        assertEquals(2, r.status(), r.err());
        assertEquals(1, r.err().lines().count(), r.err());
        assertTrue(r.err().startsWith("dsmoe"), r.err());
        assertTrue(r.err().contains(expected), r.err());
        assertFalse(r.err().contains("Exception"), r.err());
    }

    @Test
    void trainsStopsAndResumesToTheEnd() throws IOException {
        Path out = dir.resolve("run");
        PrepareCommandTest.Run first = PrepareCommandTest.run(args("--out", out.toString(), "--steps", "6", "--stop-after", "3",
                "--eval-every", "2", "--json"));
        assertEquals(0, first.status(), first.err());
        assertEquals(3, first.out().lines().count(), "one JSON object per step: " + first.out());
        new ObjectMapper().readTree(first.out().lines().findFirst().orElseThrow()); // valid JSON
        for (String f : List.of("config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json",
                "tokenizer.json", "metrics.jsonl")) {
            assertTrue(Files.isRegularFile(out.resolve(f)), f);
        }
        PrepareCommandTest.Run second = PrepareCommandTest.run("train", "--resume", out.toString(), "--seq", "16", "--batch", "2");
        assertEquals(0, second.status(), second.err());
        assertTrue(second.err().contains("resuming at step 3"), second.err());
        assertEquals(6, TrainerState.fromJson(Files.readString(out.resolve(TrainerState.FILE))).step());
        assertEquals(6, Files.readAllLines(out.resolve("metrics.jsonl")).size());
    }

    @Test
    void badInputEndsWithOneClearLine() throws IOException {
        assertOneLineError(PrepareCommandTest.run("train", "--data", dir.resolve("nope").toString(), "--out",
                dir.resolve("o").toString(), "--steps", "1"), "nope");
        assertOneLineError(PrepareCommandTest.run(args("--out", dir.resolve("o").toString(), "--steps", "1",
                "--vocab-size", "10")), "smaller than the tokenizer's");
        assertOneLineError(PrepareCommandTest.run(args("--out", dir.resolve("o").toString())), "give a budget");
        assertOneLineError(PrepareCommandTest.run(args("--out", dir.resolve("o").toString(), "--steps", "1",
                "--num-heads-per-expert", "3")), "num_heads_per_expert (3)");
        Path file = Files.writeString(dir.resolve("a-file"), "x");
        assertOneLineError(PrepareCommandTest.run(args("--out", file.toString(), "--steps", "1")), "a-file");

        Path out = dir.resolve("run");
        assertEquals(0, PrepareCommandTest.run(args("--out", out.toString(), "--steps", "1")).status());
        byte[] model = Files.readAllBytes(out.resolve("model.safetensors"));
        assertOneLineError(PrepareCommandTest.run(args("--resume", out.toString(), "--steps", "2", "--hidden-size", "64")),
                "differs");
        assertOneLineError(PrepareCommandTest.run(args("--out", out.toString(), "--steps", "2")), "already holds a training run");
        assertTrue(java.util.Arrays.equals(model, Files.readAllBytes(out.resolve("model.safetensors"))), "checkpoint untouched");
    }

    /** A child JVM training with a checkpoint every step is killed at random moments; each time the last checkpoint loads and resumes. */
    @Test
    void killedTrainingLeavesALoadableCheckpoint() throws Exception {
        Path out = dir.resolve("killed");
        SplittableRandom r = new SplittableRandom(7);
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        for (int attempt = 0; attempt < 3; attempt++) {
            List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector",
                    "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), Main.class.getName()));
            String[] a = attempt == 0 ? args("--out", out.toString(), "--steps", "100000", "--save-every", "1", "--eval-every", "0")
                    : new String[] {"train", "--resume", out.toString(), "--seq", "16", "--batch", "2", "--save-every", "1"};
            cmd.addAll(List.of(a));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("child.log").toFile()).start();
            try {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                Path state = out.resolve(TrainerState.FILE);
                long before = Files.exists(state) ? TrainerState.fromJson(Files.readString(state)).step() : -1;
                // Wait until this child has written at least one checkpoint of its own, then kill at a random moment.
                while (System.nanoTime() < deadline && p.isAlive()) {
                    if (Files.exists(state) && TrainerState.fromJson(Files.readString(state)).step() > before) break;
                    Thread.sleep(20);
                }
                assertTrue(p.isAlive(), "child ended early: " + Files.readString(dir.resolve("child.log")));
                Thread.sleep(r.nextInt(10, 400));
            } finally {
                p.destroyForcibly().waitFor();
            }
            CheckpointFiles.recover(out);
            TrainerState s = TrainerState.fromJson(Files.readString(out.resolve(TrainerState.FILE)));
            ParamLayout layout = ParamLayout.of(ModelFiles.readConfig(out));
            ModelFiles.readParams(out, layout);
            ModelFiles.readOptimizer(out, layout, layout.newBuffer(), layout.newBuffer());
            assertTrue(s.step() >= 1);
        }
        PrepareCommandTest.Run resumed = PrepareCommandTest.run("train", "--resume", out.toString(), "--seq", "16", "--batch", "2",
                "--stop-after", "1");
        assertEquals(0, resumed.status(), resumed.err());
    }
}
