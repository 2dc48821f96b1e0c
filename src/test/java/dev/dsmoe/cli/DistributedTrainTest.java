package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.io.CheckpointFiles;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.train.TrainerState;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Data-parallel training under {@code mpirun -np 2} (Open MPI, loopback): each test launches
 * mpirun with child JVMs on the test classpath, as {@code TrainCommandTest} launches one child. They
 * skip, saying so, only where mpirun is not installed ({@code .ci/run} installs it).
 */
class DistributedTrainTest {

    @TempDir
    static Path shared;
    static Path data;
    static String mpirun;

    @TempDir
    Path dir;

    @BeforeAll
    static void prepare() throws IOException {
        data = TrainCommandTest.prepareData(shared);
        mpirun = Arrays.stream(System.getenv().getOrDefault("PATH", "").split(File.pathSeparator))
                .map(p -> Path.of(p, "mpirun")).filter(Files::isExecutable).map(Path::toString).findFirst().orElse(null);
    }

    static void assumeMpirun() {
        assumeTrue(mpirun != null, "mpirun is not installed (apt-get install openmpi-bin): the MPI tests are skipped");
    }

    static List<String> java(String mainClass, String heap) {
        return new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx" + heap,
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), mainClass));
    }

    /** {@code mpirun -np 2 ... java Main train --threads 1 (tiny model) extra}. */
    static List<String> mpirunTrain(String... extra) {
        List<String> cmd = new ArrayList<>(List.of(mpirun, "-np", "2", "--allow-run-as-root", "--oversubscribe"));
        cmd.addAll(java(Main.class.getName(), "256m"));
        cmd.addAll(trainArgs(extra));
        return cmd;
    }

    static List<String> trainArgs(String... extra) {
        List<String> a = new ArrayList<>(List.of("--threads", "1"));
        a.addAll(List.of(TrainCommandTest.argsFor(data, extra)));
        return a;
    }

    record Result(int status, String out, String err) {}

    Result exec(List<String> cmd) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(cmd);
        Map<String, String> env = pb.environment();
        env.put("OMPI_ALLOW_RUN_AS_ROOT", "1");
        env.put("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        env.put("OMPI_MCA_btl_vader_single_copy_mechanism", "none"); // containers forbid the cross-memory attach
        Path out = Files.createTempFile(dir, "out", ".txt"), err = Files.createTempFile(dir, "err", ".txt");
        Process p = pb.redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        try {
            assertTrue(p.waitFor(180, TimeUnit.SECONDS), "timed out: " + cmd);
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly().waitFor();
        }
        return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
    }

    static List<JsonNode> steps(String jsonLines) throws IOException {
        List<JsonNode> l = new ArrayList<>();
        for (String line : jsonLines.lines().toList()) if (line.startsWith("{")) l.add(new ObjectMapper().readTree(line));
        return l;
    }

    static void assertSameLosses(List<JsonNode> expected, List<JsonNode> actual) {
        assertEquals(expected.size(), actual.size());
        for (int i = 0; i < expected.size(); i++) {
            JsonNode e = expected.get(i), a = actual.get(i);
            assertEquals(e.get("step").asLong(), a.get("step").asLong());
            assertEquals(e.get("tokens").asLong(), a.get("tokens").asLong(), "global tokens per step");
            double rel = Math.abs(e.get("loss").asDouble() - a.get("loss").asDouble()) / Math.abs(e.get("loss").asDouble());
            assertTrue(rel <= 1e-5, "step " + e.get("step") + ": loss " + a.get("loss") + " vs one process's " + e.get("loss"));
        }
    }

    static final Map<String, String[]> FAMILIES = Map.of(
            "dsmoe", new String[] {},
            "smoe", new String[] {"--num-attention-experts", "1", "--training-routing", "top_k", "--training-top-k", "2"},
            "dense", new String[] {"--num-attention-experts", "1", "--num-mlp-experts", "1"});

    @ParameterizedTest
    @ValueSource(strings = {"dsmoe", "smoe", "dense"})
    void twoRanksEqualOneProcessWithTwiceTheAccumulation(String family) throws Exception {
        assumeMpirun();
        int accum = family.equals("dsmoe") ? 2 : 1; // 2: the ranks interleave micro-batches 0,2 / 1,3
        List<String> common = new ArrayList<>(List.of(FAMILIES.get(family)));
        common.addAll(List.of("--steps", "10", "--eval-every", "0", "--json"));
        List<String> mpi = new ArrayList<>(common);
        mpi.addAll(List.of("--out", dir.resolve("mpi").toString(), "--grad-accum", Integer.toString(accum)));
        Result r = exec(mpirunTrain(mpi.toArray(String[]::new)));
        assertEquals(0, r.status(), r.err());
        List<String> one = new ArrayList<>(common);
        one.addAll(List.of("--out", dir.resolve("one").toString(), "--grad-accum", Integer.toString(2 * accum)));
        PrepareCommandTest.Run single = PrepareCommandTest.run(TrainCommandTest.argsFor(data, one.toArray(String[]::new)));
        assertEquals(0, single.status(), single.err());
        assertEquals(10, steps(r.out()).size(), "rank 0 alone prints: " + r.out());
        assertSameLosses(steps(single.out()), steps(r.out()));
        assertEquals(2, TrainCommandTest.state(dir.resolve("mpi")).ranks(), "the checkpoint records the ranks");
    }

    @Test
    void resumeUnderMpirunContinuesTheRunAndAnotherRankCountIsRefused() throws Exception {
        assumeMpirun();
        Path out = dir.resolve("run");
        Result first = exec(mpirunTrain("--out", out.toString(), "--steps", "6", "--stop-after", "3", "--eval-every", "0", "--json"));
        assertEquals(0, first.status(), first.err());
        Result second = exec(mpirunTrain("--resume", out.toString(), "--steps", "6"));
        assertEquals(0, second.status(), second.err());
        PrepareCommandTest.Run single = PrepareCommandTest.run(TrainCommandTest.argsFor(data, "--out", dir.resolve("one").toString(),
                "--steps", "6", "--grad-accum", "2", "--eval-every", "0", "--json"));
        assertEquals(0, single.status(), single.err());
        List<JsonNode> both = new ArrayList<>(steps(first.out()));
        both.addAll(steps(second.out()));
        assertSameLosses(steps(single.out()), both);
        assertEquals(6, TrainCommandTest.state(out).step());
        assertEquals(6, Files.readAllLines(out.resolve("metrics.jsonl")).size());

        PrepareCommandTest.Run alone = PrepareCommandTest.run("train", "--resume", out.toString(), "--steps", "8");
        TrainCommandTest.assertOneLineError(alone, "was trained on 2 ranks (mpirun -np 2), this job has 1");
    }

    @Test
    void allRanksHoldTheSameWeightsOverTcpThroughGarbageCollections() throws Exception {
        assumeMpirun();
        Path out = Files.createDirectories(dir.resolve("probe"));
        List<String> cmd = new ArrayList<>(List.of(mpirun, "-np", "2", "--allow-run-as-root", "--oversubscribe",
                "--mca", "btl", "self,tcp")); // the transport that crosses machines
        cmd.addAll(java(MpiProbe.class.getName(), "48m"));
        cmd.addAll(List.of(data.toString(), out.toString(), "12"));
        Result r = exec(cmd);
        assertEquals(0, r.status(), r.err());
        String[] r0 = Files.readString(out.resolve("rank-0.txt")).trim().split(" ");
        String[] r1 = Files.readString(out.resolve("rank-1.txt")).trim().split(" ");
        assertEquals(r0[0], r1[0], "identical weights on both ranks after 12 steps");
        assertTrue(Long.parseLong(r0[1]) >= 3 && Long.parseLong(r1[1]) >= 3, "each JVM collected several times: " + r0[1] + ", " + r1[1]);
        assertTrue(Files.isRegularFile(out.resolve("model.safetensors")), "rank 0 saved");
    }

    @Test
    void ranksThatDisagreeStopTogetherInOneLine() throws Exception {
        assumeMpirun();
        List<String> cmd = new ArrayList<>(List.of(mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "1"));
        cmd.addAll(java(Main.class.getName(), "256m"));
        cmd.addAll(trainArgs("--out", dir.resolve("a").toString(), "--steps", "2", "--seed", "1"));
        cmd.addAll(List.of(":", "-np", "1"));
        cmd.addAll(java(Main.class.getName(), "256m"));
        cmd.addAll(trainArgs("--out", dir.resolve("a").toString(), "--steps", "2", "--seed", "2"));
        Result r = exec(cmd);
        assertEquals(2, r.status(), r.err());
        List<String> ours = r.err().lines().filter(l -> l.startsWith("dsmoe")).toList();
        assertEquals(1, ours.size(), r.err());
        assertTrue(ours.getFirst().contains("ranks disagree before step 1 on the training options"), r.err());
        assertFalse(Files.exists(dir.resolve("a").resolve(TrainerState.FILE)), "no step was taken");
    }

    @Test
    void aDeadRankEndsTheJobWithinSecondsAndTheCheckpointLoads() throws Exception {
        assumeMpirun();
        Path out = dir.resolve("killed");
        ProcessBuilder pb = new ProcessBuilder(mpirunTrain("--out", out.toString(), "--steps", "100000", "--save-every", "1",
                "--eval-every", "0"));
        pb.environment().put("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
        Process p = pb.redirectErrorStream(true).redirectOutput(dir.resolve("mpirun.log").toFile()).start();
        try {
            Path state = out.resolve(TrainerState.FILE);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (System.nanoTime() < deadline && p.isAlive() && !Files.exists(state)) Thread.sleep(50);
            assertTrue(p.isAlive(), "mpirun ended early: " + Files.readString(dir.resolve("mpirun.log")));
            List<ProcessHandle> ranks = p.descendants()
                    .filter(h -> h.info().command().map(c -> c.endsWith("/java")).orElse(false)).toList();
            assertEquals(2, ranks.size(), "two rank JVMs under mpirun");
            ranks.getLast().destroyForcibly();
            long t0 = System.nanoTime();
            assertTrue(p.waitFor(30, TimeUnit.SECONDS), "the surviving rank did not end");
            double seconds = (System.nanoTime() - t0) / 1e9;
            assertNotEquals(0, p.exitValue(), "the job reports the failure");
            assertTrue(seconds < 30, "ended in " + seconds + " s");
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly().waitFor();
        }
        CheckpointFiles.recover(out);
        ParamLayout layout = ParamLayout.of(ModelFiles.readConfig(out));
        ModelFiles.readParams(out, layout);
        ModelFiles.readOptimizer(out, layout, layout.newBuffer(), layout.newBuffer());
        assertTrue(TrainCommandTest.state(out).step() >= 1);
    }

    @Test
    void distMpiWithoutLibmpiFailsInOneLine() throws Exception {
        List<String> cmd = java(Main.class.getName(), "256m");
        cmd.addAll(trainArgs("--out", dir.resolve("x").toString(), "--steps", "1", "--dist", "mpi"));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().put("DSMOE_LIBMPI", dir.resolve("no-such-libmpi.so").toString());
        Path log = dir.resolve("child.log");
        Process p = pb.redirectErrorStream(true).redirectOutput(log.toFile()).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        String err = Files.readString(log).lines().filter(l -> !l.startsWith("WARNING: Using incubator")).reduce("", (a, b) -> a + b + "\n");
        assertEquals(2, p.exitValue(), err);
        assertEquals(1, err.lines().count(), err);
        assertTrue(err.startsWith("dsmoe train: --dist mpi: libmpi did not load"), err);
    }
}
