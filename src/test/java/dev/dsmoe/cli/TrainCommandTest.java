package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.io.CheckpointFiles;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.Kernels;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.train.TrainerState;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
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
        PrepareCommandTest.Run second = PrepareCommandTest.run("train", "--resume", out.toString(), "--seq", "16", "--batch", "2",
                "--no-json");
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
                "--hidden-size 64 contradicts the run's saved hidden_size 32; drop --hidden-size to continue the run");
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

    static Map<String, byte[]> files(Path dir) throws IOException {
        Map<String, byte[]> m = new TreeMap<>();
        try (var s = Files.list(dir)) {
            for (Path f : s.toList()) m.put(f.getFileName().toString(), Files.readAllBytes(f));
        }
        return m;
    }

    static void assertSameFiles(Map<String, byte[]> expected, Map<String, byte[]> actual) {
        assertEquals(expected.keySet(), actual.keySet());
        expected.forEach((name, bytes) -> assertArrayEquals(bytes, actual.get(name), name + " untouched"));
    }

    static TrainerState state(Path run) throws IOException {
        return TrainerState.fromJson(Files.readString(run.resolve(TrainerState.FILE)));
    }

    static void assertSameRun(Path expected, Path actual) throws IOException {
        assertArrayEquals(Files.readAllBytes(expected.resolve("model.safetensors")), Files.readAllBytes(actual.resolve("model.safetensors")),
                "model.safetensors equals the uninterrupted run's, byte for byte");
        assertArrayEquals(Files.readAllBytes(expected.resolve("optimizer.safetensors")),
                Files.readAllBytes(actual.resolve("optimizer.safetensors")), "and so do the AdamW moments");
    }

    /** The run started is the run continued: a resume with no options takes the seed (and all else) from the checkpoint. */
    @Test
    void resumeWithNoOptionsContinuesTheStartedRun() throws IOException {
        Path whole = dir.resolve("whole"), parts = dir.resolve("parts");
        assertEquals(0, PrepareCommandTest.run(args("--out", whole.toString(), "--seed", "7", "--steps", "4")).status());
        PrepareCommandTest.Run first = PrepareCommandTest.run(args("--out", parts.toString(), "--seed", "7", "--steps", "4",
                "--stop-after", "2"));
        assertEquals(0, first.status(), first.err());
        PrepareCommandTest.Run rest = PrepareCommandTest.run("train", "--resume", parts.toString());
        assertEquals(0, rest.status(), rest.err());
        assertEquals(4, state(parts).step());
        assertSameRun(whole, parts);
    }

    /** The shape given alone (as a resume needed before): the data order is still the saved seed's, not the default's. */
    @Test
    void resumeGivenOnlyTheShapeKeepsTheSavedSeed() throws IOException {
        Path whole = dir.resolve("whole"), parts = dir.resolve("parts");
        assertEquals(0, PrepareCommandTest.run(args("--out", whole.toString(), "--seed", "7", "--steps", "4")).status());
        assertEquals(0, PrepareCommandTest.run(args("--out", parts.toString(), "--seed", "7", "--steps", "4",
                "--stop-after", "2")).status());
        PrepareCommandTest.Run rest = PrepareCommandTest.run("train", "--resume", parts.toString(), "--batch", "2", "--seq", "16");
        assertEquals(0, rest.status(), rest.err());
        assertSameRun(whole, parts);
    }

    @Test
    void optionsThatContradictTheRunAreRefusedAndTheCheckpointIsUntouched() throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, PrepareCommandTest.run(args("--out", run.toString(), "--seed", "7", "--steps", "4", "--stop-after", "2")).status());
        Map<String, byte[]> before = files(run);
        String prefix = "dsmoe train: --resume " + run + ": ";
        PrepareCommandTest.Run seed = PrepareCommandTest.run("train", "--resume", run.toString(), "--seed", "9");
        assertOneLineError(seed, prefix + "--seed 9 contradicts the run's saved seed 7; drop --seed to continue the run");
        assertOneLineError(PrepareCommandTest.run("train", "--resume", run.toString(), "--lr", "2e-3", "--grad-accum", "2"),
                "--grad-accum 2 contradicts the run's saved grad-accum 1; --lr 2e-3 contradicts the run's saved lr 0.001; "
                        + "drop --grad-accum, --lr to continue the run");
        int threads = Parallel.threads();
        try {
            assertOneLineError(PrepareCommandTest.run("train", "--resume", run.toString(), "--threads", Integer.toString(threads + 1)),
                    "--threads " + (threads + 1) + " contradicts the run's saved thread count " + threads);
        } finally {
            Parallel.setThreads(threads); // --threads sets the pool for the rest of this JVM
        }
        if (state(run).kernels().equals("blas")) { // else OpenBLAS does not load here, and there is no other backend to ask for
            try {
                assertOneLineError(PrepareCommandTest.run("train", "--resume", run.toString(), "--kernels", "java"),
                        "--kernels java contradicts the run's saved kernels blas");
            } finally {
                Kernels.select(Kernels.Backend.BLAS); // --kernels selects the backend for the rest of this JVM
            }
        }
        assertOneLineError(PrepareCommandTest.run("train", "--resume", run.toString(), "--steps", "3"),
                "--steps 3 is fewer than the run's saved 4 steps; a budget can only be extended");
        assertSameFiles(before, files(run));
        // The same values again are no contradiction.
        PrepareCommandTest.Run same = PrepareCommandTest.run(args("--resume", run.toString(), "--seed", "7", "--steps", "4",
                "--lr", "0.001", "--stop-after", "1"));
        assertEquals(0, same.status(), same.err());
        assertEquals(3, state(run).step());
    }

    @Test
    void movedDataIsNamedWithDataAndOtherDataIsRefused() throws IOException {
        Path moved = dir.resolve("data-here");
        Files.createDirectories(moved);
        for (String f : List.of("meta.json", "tokenizer.json", "train.bin", "val.bin")) Files.copy(data.resolve(f), moved.resolve(f));
        Path run = dir.resolve("run");
        assertEquals(0, PrepareCommandTest.run(argsFor(moved, "--out", run.toString(), "--seed", "7", "--steps", "3",
                "--stop-after", "1")).status());
        Path there = Files.move(moved, dir.resolve("data-there"));
        Map<String, byte[]> before = files(run);
        assertOneLineError(PrepareCommandTest.run("train", "--resume", run.toString()),
                "the run's data directory " + moved.toAbsolutePath() + " is gone; if it moved, name its new place with --data DIR");

        Path other = dir.resolve("other");
        PrepareCommandTest.Run prep = PrepareCommandTest.run("prepare", "--input", PrepareCommandTest.corpus(dir).toString(),
                "--out", other.toString(), "--vocab-size", "300", "--val-fraction", "0.2");
        assertEquals(0, prep.status(), prep.err());
        assertOneLineError(PrepareCommandTest.run("train", "--resume", run.toString(), "--data", other.toString()),
                "--data " + other + " holds other data than the run was trained on");
        assertSameFiles(before, files(run));

        PrepareCommandTest.Run resumed = PrepareCommandTest.run("train", "--resume", run.toString(), "--data", there.toString());
        assertEquals(0, resumed.status(), resumed.err());
        assertEquals(3, state(run).step());
        assertEquals(there.toAbsolutePath().toString(), state(run).data(), "the new place is recorded");
    }

    /** A larger budget extends the run (recorded); the schedule's rate goes on from where it was, down to --min-lr. */
    @Test
    void extendingTheBudgetContinuesTheScheduleAndIsRecorded() throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, PrepareCommandTest.run(args("--out", run.toString(), "--seed", "7", "--steps", "6", "--warmup", "1",
                "--stop-after", "3", "--json")).status());
        PrepareCommandTest.Run more = PrepareCommandTest.run("train", "--resume", run.toString(), "--tokens", "320");
        assertEquals(0, more.status(), more.err());
        TrainerState s = state(run);
        assertEquals(10, s.step());
        assertEquals(10, s.totalSteps());
        assertEquals(List.of(new TrainerState.Budget(0, "--steps 6", 6), new TrainerState.Budget(3, "--tokens 320", 10)), s.budgets());
        assertEquals(3, s.cosineFromStep());
        assertEquals(0.4, s.cosineFromProgress(), 1e-12, "steps 2..6 are the cosine: step 3 is 2/5 of it");
        List<Double> lr = new ArrayList<>();
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) lr.add(new ObjectMapper().readTree(line).get("lr").asDouble());
        assertEquals(10, lr.size());
        for (int i = 3; i < 10; i++) assertTrue(lr.get(i) < lr.get(i - 1), "the rate keeps falling: " + lr);
        assertTrue(lr.get(3) > lr.get(2) - (lr.get(1) - lr.get(2)), "no jump at the resume: " + lr);
        assertEquals(1e-4, lr.get(9), 1e-15, "--min-lr at the new end");
        assertEquals(7, more.out().lines().count(), "--json kept from the start: " + more.out());
    }

    @Test
    void operationalOptionsKeepTheirSavedValuesUnlessGiven() throws IOException {
        Path run = dir.resolve("run");
        assertEquals(0, PrepareCommandTest.run(args("--out", run.toString(), "--steps", "6", "--stop-after", "2", "--json",
                "--eval-every", "1", "--eval-batches", "1", "--save-every", "1")).status());
        PrepareCommandTest.Run kept = PrepareCommandTest.run("train", "--resume", run.toString(), "--stop-after", "2");
        assertEquals(0, kept.status(), kept.err());
        assertEquals(2, kept.out().lines().count(), "--json kept: " + kept.out());
        TrainerState s = state(run);
        assertEquals(List.of(1L, 1L, 1), List.of(s.saveEvery(), s.evalEvery(), s.evalBatches()));
        assertTrue(new ObjectMapper().readTree(Files.readAllLines(run.resolve("metrics.jsonl")).getLast()).has("valLoss"),
                "--eval-every 1 kept");
        PrepareCommandTest.Run changed = PrepareCommandTest.run("train", "--resume", run.toString(), "--no-json", "--eval-every", "0");
        assertEquals(0, changed.status(), changed.err());
        assertEquals("", changed.out());
        assertFalse(state(run).json());
        assertEquals(0, state(run).evalEvery());
    }

    /** A trainer_state.json from before format 2 still resumes (with a note) and is upgraded at the next checkpoint. */
    @Test
    void anOlderStateResumesWithTheCurrentKernelsAndIsUpgraded() throws IOException {
        Path whole = dir.resolve("whole"), parts = dir.resolve("parts");
        assertEquals(0, PrepareCommandTest.run(args("--out", whole.toString(), "--seed", "7", "--steps", "4")).status());
        assertEquals(0, PrepareCommandTest.run(args("--out", parts.toString(), "--seed", "7", "--steps", "4",
                "--stop-after", "2")).status());
        var om = new ObjectMapper();
        var node = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(Files.readString(parts.resolve(TrainerState.FILE)));
        node.remove(List.of("dataFingerprint", "kernels", "threads", "cosineFromStep", "cosineFromProgress", "budgets",
                "saveEvery", "evalEvery", "evalBatches", "json"));
        node.put("format", 1);
        Files.writeString(parts.resolve(TrainerState.FILE), om.writeValueAsString(node));
        assertTrue(state(parts).legacy());

        PrepareCommandTest.Run rest = PrepareCommandTest.run("train", "--resume", parts.toString());
        assertEquals(0, rest.status(), rest.err());
        assertTrue(rest.err().contains("is from an older build (format 1)"), rest.err());
        assertSameRun(whole, parts);
        TrainerState s = state(parts);
        assertEquals(TrainerState.FORMAT, s.format());
        assertEquals(state(whole).dataFingerprint(), s.dataFingerprint());
        assertEquals(List.of(new TrainerState.Budget(0, "--steps 4", 4)), s.budgets());
    }
}
