package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.model.Footprint;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Runs too large for the machine or the engine end with one line and status 2: before anything
 * is allocated (memory estimates), or at the config (max_position_embeddings).
 */
class MemoryLimitsTest {

    @TempDir
    static Path shared;
    static Path data;

    @TempDir
    Path dir;

    @BeforeAll
    static void prepare() throws IOException {
        data = TrainCommandTest.prepareData(shared);
    }

    /** The CLI in a child JVM with a heap of {@code heap}: its status and its stderr without the incubator notice. */
    static PrepareCommandTest.Run child(String heap, Path log, String... args) throws IOException, InterruptedException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx" + heap, "--add-modules", "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectOutput(log.resolveSibling(log.getFileName() + ".out").toFile())
                .redirectError(log.toFile()).start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
            throw new AssertionError("child did not end: " + Files.readString(log));
        }
        String err = Files.readAllLines(log, StandardCharsets.UTF_8).stream()
                .filter(l -> !l.startsWith("WARNING: Using incubator modules")).collect(Collectors.joining("\n", "", "\n"));
        return new PrepareCommandTest.Run(p.exitValue(), "", err.equals("\n") ? "" : err);
    }

    /** dsmoe-small at width 16384 needs ~2.7 GiB of parameters, gradients and moments: refused under a 2 GiB heap. */
    @Test
    void trainingTooLargeForTheHeapIsRefusedInOneLine() throws Exception {
        Path out = dir.resolve("run");
        PrepareCommandTest.Run r = child("2g", dir.resolve("train.log"), "train", "--data", data.toString(), "--out", out.toString(),
                "--steps", "1", "--seq", "16", "--batch", "2", "--hidden-size", "16384");
        TrainCommandTest.assertOneLineError(r, "of heap");
        assertTrue(r.err().contains("parameters, gradients and AdamW moments") && r.err().contains("DSMOE_HEAP"), r.err());
        assertFalse(Files.exists(out.resolve("model.safetensors")), "nothing written");
    }

    /** bench infer's random dense-1b weights (1.3 B floats) do not fit a 1 GiB heap. */
    @Test
    void benchmarkModelTooLargeForTheHeapIsRefusedInOneLine() throws Exception {
        PrepareCommandTest.Run r = child("1g", dir.resolve("bench.log"), "bench", "infer", "--presets", "dense-1b");
        TrainCommandTest.assertOneLineError(r, "of heap");
        assertTrue(r.err().contains("parameters"), r.err());
    }

    @Test
    void maxPositionEmbeddingsHasABound() throws IOException {
        String expected = "max_position_embeddings (2000000000) must be at most 1048576";
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run(TrainCommandTest.argsFor(data, "--out", dir.resolve("o").toString(),
                "--steps", "1", "--max-position-embeddings", "2000000000")), expected);
        assertFalse(Files.exists(dir.resolve("o").resolve("model.safetensors")));

        Path model = dir.resolve("model");
        PrepareCommandTest.Run trained = PrepareCommandTest.run(TrainCommandTest.argsFor(data, "--out", model.toString(), "--steps", "1"));
        assertEquals(0, trained.status(), trained.err());
        Path config = model.resolve("config.json");
        ObjectMapper om = new ObjectMapper();
        ObjectNode c = (ObjectNode) om.readTree(config.toFile());
        c.put("max_position_embeddings", 2_000_000_000);
        Files.writeString(config, om.writeValueAsString(c));
        byte[] weights = Files.readAllBytes(model.resolve("model.safetensors"));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class"), expected);
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", model.toString()), expected);
        assertTrue(java.util.Arrays.equals(weights, Files.readAllBytes(model.resolve("model.safetensors"))), "model untouched");
    }

    @Test
    void theMessageNamesTheLargestPartsAndWhatThereIs() {
        Footprint f = Footprint.heap("activations", 3L << 30, 10).plus(Footprint.heap("KV cache", 1L << 30, 10))
                .plus(Footprint.offHeap("the mapped model file", 5L << 30));
        String heap = assertRefused(f, 2L << 30, 64L << 30);
        assertEquals("needs 4.0 GiB of heap (activations 3.0 GiB, KV cache 1.0 GiB), the heap has 2.0 GiB: FIX", heap);
        String machine = assertRefused(f, 8L << 30, 8L << 30);
        assertTrue(machine.startsWith("needs 5.0 GiB of memory outside the heap (the mapped model file 5.0 GiB) besides 4.0 GiB"
                + " of heap arrays; the machine has 8.0 GiB"), machine);
        MemoryCheck.check(f, "FIX", 8L << 30, 10L << 30); // fits
        MemoryCheck.check(f, "FIX", 8L << 30, 0); // machine size unknown: only the heap is checked
        String array = assertRefused(Footprint.heap("logits", 1L << 33, 1L << 31), 1L << 40, 0);
        assertTrue(array.contains("more than a Java array holds"), array);
    }

    private static String assertRefused(Footprint f, long heap, long physical) {
        try {
            MemoryCheck.check(f, "FIX", heap, physical);
        } catch (Errors.UserError e) {
            return e.getMessage();
        }
        throw new AssertionError("not refused: " + f);
    }
}
