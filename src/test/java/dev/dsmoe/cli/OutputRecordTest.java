package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.kernels.Kernels;
import dev.dsmoe.kernels.Parallel;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The numbers the engine produces, pinned: for a fixed tiny run of each family (Dense, SMoE,
 * DS-MoE with a linear and with an MLP router) on each GEMM backend, the per-step losses, the
 * SHA-256 of the final {@code model.safetensors}, the validation loss under several expert
 * selections and greedy completions under several selections and weight types. A refactoring
 * that is meant to change nothing must leave all of them as recorded.
 *
 * <p>Floating-point results depend on the CPU's vector width (lane count of the reductions), the
 * GEMM backend, the thread count and whether oneDNN runs inference's GEMM products (with which
 * kernels), so the record is keyed by all four. Where the running
 * machine matches a recorded key, everything must be identical. Elsewhere the losses must agree
 * within {@value #LOSS_TOLERANCE} relative (reduction order moves them by ~1e-7 per step), and
 * hashes and completions are not compared (a near-tie can flip a greedy token).
 *
 * <p>When a change is meant to alter numbers, regenerate the record for this machine with
 * {@code ./dsmoe test -Dtest=OutputRecordTest -Ddsmoe.record.write=true}, say why in the commit,
 * and keep the keys of other machines only if they were regenerated too.
 */
class OutputRecordTest {

    static final double LOSS_TOLERANCE = 1e-4;
    static final Path RECORD = Path.of("src/test/resources/output-record.json");
    static final int THREADS = 2;

    @TempDir
    Path dir;

    /** Family name -> the tiny model's options (each family small enough to train in ~1 s). */
    static final Map<String, List<String>> FAMILIES = new TreeMap<>(Map.of(
            "dense", List.of("--preset", "dense-small", "--expert-intermediate-size", "64"),
            "smoe", List.of("--preset", "smoe-small", "--num-mlp-experts", "4", "--expert-intermediate-size", "16"),
            "dsmoe", List.of("--preset", "dsmoe-small", "--num-mlp-experts", "8", "--expert-intermediate-size", "8"),
            "dsmoe-mlp-router", List.of("--preset", "dsmoe-small", "--num-mlp-experts", "8", "--expert-intermediate-size", "8",
                    "--router", "mlp", "--router-hidden-size", "8")));

    static final List<String> COMMON = List.of("--hidden-size", "32", "--num-hidden-layers", "2", "--head-dim", "8",
            "--max-position-embeddings", "32", "--seq", "16", "--batch", "2", "--steps", "12", "--lr", "1e-2",
            "--seed", "11", "--eval-every", "0");

    static final List<String> EVAL_STRATEGIES = List.of("dense", "top-k:2", "top-k:att=1,mlp=3", "threshold:0.2",
            "threshold:att=0.3,mlp=0.6", "threshold-top-k:0.4");

    /**
     * Selection and weight type of each recorded completion; each is recorded greedy and sampled
     * at temperature 1 with a fixed seed (a tiny model's greedy text is repetitive, the sampled one
     * follows small changes in the logits).
     */
    static final List<List<String>> COMPLETIONS = List.of(List.of("dense", "f32"), List.of("top-k:1", "f32"),
            List.of("threshold:0.5", "f32"), List.of("dense", "bf16"));

    /**
     * What the bits depend on: the Java kernels on the vector width, OpenBLAS also on the kernels
     * it picks for the core type ({@code OPENBLAS_CORETYPE}, or the CPU it detects).
     */
    static String machineKey(String backend) {
        String b = backend;
        if (backend.equals("blas")) {
            String core = System.getenv("OPENBLAS_CORETYPE");
            b += " (" + (core == null || core.isBlank() ? cpuModel() : "OPENBLAS_CORETYPE=" + core) + ")";
        }
        return FloatVector.SPECIES_PREFERRED.vectorBitSize() + "-bit vectors/" + b + "/" + THREADS + " threads/" + oneDnn();
    }

    /** Inference's GEMM products (eval, prompts): through oneDNN, whose bits depend on the kernels it picks, or not. */
    private static String oneDnn() {
        dev.dsmoe.kernels.OneDnn d = dev.dsmoe.kernels.OneDnn.get();
        return d == null ? "no oneDNN" : "oneDNN " + d.kernelNames();
    }

    private static String cpuModel() {
        try (var lines = Files.lines(Path.of("/proc/cpuinfo"))) {
            return lines.filter(l -> l.startsWith("model name")).map(l -> l.substring(l.indexOf(':') + 1).trim())
                    .findFirst().orElse("unknown CPU");
        } catch (IOException | RuntimeException e) {
            return "unknown CPU";
        }
    }

    @Test
    void outputsMatchTheRecord() throws Exception {
        int threadsBefore = Parallel.threads();
        try {
            Path data = TrainCommandTest.prepareData(dir);
            ObjectMapper om = new ObjectMapper();
            ObjectNode measured = om.createObjectNode();
            List<String> backends = new ArrayList<>(List.of("java"));
            try {
                Kernels.select(Kernels.Backend.BLAS);
                backends.add("blas");
            } catch (UnsupportedOperationException | LinkageError e) {
                System.err.println("OutputRecordTest: OpenBLAS unavailable, the blas keys are not checked: " + e.getMessage());
            }
            for (String backend : backends) {
                ObjectNode families = measured.putObject(machineKey(backend));
                for (var f : FAMILIES.entrySet()) families.set(f.getKey(), run(om, data, backend, f.getKey(), f.getValue()));
            }
            if (Boolean.getBoolean("dsmoe.record.write")) {
                ObjectNode record = Files.exists(RECORD) ? (ObjectNode) om.readTree(RECORD.toFile()) : om.createObjectNode();
                record.setAll(measured);
                Files.createDirectories(RECORD.getParent());
                Files.writeString(RECORD, om.enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(record) + "\n");
                System.err.println("OutputRecordTest: wrote " + measured.size() + " keys to " + RECORD.toAbsolutePath());
                return;
            }
            assertTrue(Files.exists(RECORD), "no record at " + RECORD + ": run with -Ddsmoe.record.write=true");
            compare(om.readTree(RECORD.toFile()), measured);
        } finally {
            Kernels.select(Kernels.Backend.AUTO);
            Parallel.setThreads(threadsBefore);
        }
    }

    private JsonNode run(ObjectMapper om, Path data, String backend, String family, List<String> options) throws Exception {
        Path out = dir.resolve(backend + "-" + family);
        List<String> train = new ArrayList<>(List.of("train", "--data", data.toString(), "--out", out.toString(),
                "--kernels", backend, "--threads", String.valueOf(THREADS), "--json"));
        train.addAll(options);
        train.addAll(COMMON);
        PrepareCommandTest.Run t = PrepareCommandTest.run(train.toArray(String[]::new));
        assertEquals(0, t.status(), t.err());

        ObjectNode r = om.createObjectNode();
        var losses = r.putArray("losses");
        for (String line : Files.readAllLines(out.resolve("metrics.jsonl"))) {
            JsonNode m = om.readTree(line);
            losses.add(m.get("loss").asText() + " lm " + m.get("lmLoss").asText() + " gradNorm " + m.get("gradNorm").asText());
        }
        r.put("model.safetensors sha256", sha256(out.resolve("model.safetensors")));

        List<String> eval = new ArrayList<>(List.of("eval", "--model", out.toString(), "--data", data.toString(), "--json",
                "--seq", "16", "--kernels", backend, "--threads", String.valueOf(THREADS)));
        for (String s : EVAL_STRATEGIES) eval.addAll(List.of("--strategy", s));
        PrepareCommandTest.Run e = PrepareCommandTest.run(eval.toArray(String[]::new));
        assertEquals(0, e.status(), e.err());
        ObjectNode evalLosses = r.putObject("eval losses");
        for (String line : e.out().lines().toList()) {
            JsonNode j = om.readTree(line);
            evalLosses.put(j.get("selection").asText(), j.get("loss").asText());
        }

        ObjectNode completions = r.putObject("completions");
        for (List<String> c : COMPLETIONS) {
            for (String temperature : List.of("0", "1")) {
                PrepareCommandTest.Run g = PrepareCommandTest.run("generate", "--model", out.toString(), "--prompt", "class F1",
                        "--temperature", temperature, "--top-k", "0", "--top-p", "1", "--seed", "5", "--max-tokens", "12",
                        "--strategy", c.get(0), "--dtype", c.get(1), "--kernels", backend, "--threads", String.valueOf(THREADS));
                assertEquals(0, g.status(), g.err());
                completions.put(c.get(0) + " " + c.get(1) + (temperature.equals("0") ? " greedy" : " sampled"), g.out());
            }
        }
        return r;
    }

    private static void compare(JsonNode record, JsonNode measured) {
        for (Iterator<String> keys = measured.fieldNames(); keys.hasNext(); ) {
            String key = keys.next();
            JsonNode now = measured.get(key);
            if (record.has(key)) {
                assertEquals(record.get(key).toPrettyString(), now.toPrettyString(),
                        "outputs differ from the record for " + key + " (regenerate only if the change is meant to alter numbers)");
                continue;
            }
            // Another CPU: compare losses within tolerance against any recorded key of the same backend.
            String backend = backendOf(key);
            JsonNode ref = null;
            for (Iterator<String> rk = record.fieldNames(); rk.hasNext(); ) {
                String k = rk.next();
                if (backendOf(k).equals(backend)) ref = record.get(k);
            }
            if (ref == null) fail("no recorded key for backend " + backend + "; recorded: " + record.fieldNames().next());
            System.err.println("OutputRecordTest: " + key + " is not recorded; comparing losses within " + LOSS_TOLERANCE);
            for (Iterator<String> fs = now.fieldNames(); fs.hasNext(); ) {
                String family = fs.next();
                JsonNode a = ref.get(family), b = now.get(family);
                for (int i = 0; i < b.get("losses").size(); i++) {
                    String[] x = a.get("losses").get(i).asText().split(" "), y = b.get("losses").get(i).asText().split(" ");
                    for (int j : new int[] {0, 2}) close(family + " step " + (i + 1), x[j], y[j]);
                }
                for (Iterator<String> ss = b.get("eval losses").fieldNames(); ss.hasNext(); ) {
                    String s = ss.next();
                    close(family + " eval " + s, a.get("eval losses").get(s).asText(), b.get("eval losses").get(s).asText());
                }
            }
        }
    }

    private static String backendOf(String key) {
        return key.split("/")[1].split(" ")[0];
    }

    private static void close(String what, String expected, String actual) {
        double e = Double.parseDouble(expected), a = Double.parseDouble(actual);
        assertTrue(Math.abs(e - a) <= LOSS_TOLERANCE * Math.abs(e), what + ": recorded " + expected + ", now " + actual);
    }

    private static String sha256(Path p) throws IOException, NoSuchAlgorithmException {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
    }
}
