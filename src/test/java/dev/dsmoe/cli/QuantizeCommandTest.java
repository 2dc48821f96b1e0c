package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.train.TrainerState;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ./dsmoe quantize} end to end: a tiny trained model quantized, then loaded by generate, eval and bench infer. */
class QuantizeCommandTest {

    @TempDir
    static Path shared;
    static Path data, model, q8, bf16;

    @TempDir
    Path dir;

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * TrainCommandTest's tiny DS-MoE with every row a whole number of Q8_0 blocks (32 columns or
     * 64), so the file size is exactly 1.125 bytes a weight; o_proj and down_proj of the usual tiny
     * model (16 columns) are covered by InferenceModelFilesTest.
     */
    @BeforeAll
    static void trainAndQuantize() throws IOException {
        data = TrainCommandTest.prepareData(shared);
        model = shared.resolve("model");
        List<String> a = new ArrayList<>(List.of(TrainCommandTest.argsFor(data, "--out", model.toString(), "--steps", "3",
                "--eval-every", "0")));
        a.addAll(List.of("--head-dim", "16", "--expert-intermediate-size", "32"));
        PrepareCommandTest.Run t = PrepareCommandTest.run(a.toArray(String[]::new));
        assertEquals(0, t.status(), t.err());
        q8 = shared.resolve("q8");
        bf16 = shared.resolve("bf16");
        for (Path out : List.of(q8, bf16)) {
            PrepareCommandTest.Run r = PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype",
                    out == q8 ? "q8_0" : "bf16", "--out", out.toString());
            assertEquals(0, r.status(), r.err());
            assertTrue(r.out().startsWith("dsmoe quantize: wrote " + out + ": " + (out == q8 ? "q8_0" : "bf16") + " weights"), r.out());
        }
    }

    private static PrepareCommandTest.Run generate(Path m, String... extra) {
        List<String> a = new ArrayList<>(List.of("generate", "--model", m.toString(), "--prompt", "class F1 {", "--max-tokens",
                "12", "--temperature", "0", "--strategy", "top-k:2"));
        a.addAll(List.of(extra));
        return PrepareCommandTest.run(a.toArray(String[]::new));
    }

    /** Per strategy: the exact validation loss and tokens scored of {@code eval --json}. */
    private static Map<String, List<String>> losses(Path m, String... extra) throws IOException {
        List<String> a = new ArrayList<>(List.of("eval", "--model", m.toString(), "--seq", "16", "--strategy", "dense",
                "--strategy", "top-k:1", "--json"));
        a.addAll(List.of(extra));
        PrepareCommandTest.Run r = PrepareCommandTest.run(a.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        Map<String, List<String>> out = new java.util.TreeMap<>();
        for (String line : r.out().lines().toList()) {
            JsonNode o = JSON.readTree(line);
            out.put(o.path("selection").asText(o.toString()), List.of(o.path("loss").toString(), o.path("tokens_scored").toString(),
                    o.path("perplexity").toString()));
        }
        assertFalse(out.isEmpty(), r.out());
        return out;
    }

    @Test
    void aQuantizedCheckpointGeneratesAndScoresExactlyAsQuantizingAtLoad() throws IOException {
        for (Path m : List.of(q8, bf16)) {
            String type = m == q8 ? "q8_0" : "bf16";
            PrepareCommandTest.Run stored = generate(m), atLoad = generate(model, "--dtype", type);
            assertEquals(0, stored.status(), stored.err());
            assertEquals(0, atLoad.status(), atLoad.err());
            assertEquals(atLoad.out(), stored.out(), type);
            assertTrue(stored.out().length() > "class F1 {".length() + 1, stored.out());
            assertEquals(stored.out(), generate(m, "--dtype", type).out(), "the stored type given explicitly is the same");
            // eval: no --data, as the copied trainer_state.json names it; the same loss to the last bit
            Map<String, List<String>> l = losses(m);
            assertEquals(losses(model, "--dtype", type), l, type);
            assertNotEquals(losses(model), l, type + " weights are not the fp32 ones");
        }
        PrepareCommandTest.Run e = PrepareCommandTest.run("eval", "--model", q8.toString(), "--seq", "16", "--strategy", "dense");
        assertTrue(e.out().contains(", q8_0 weights,"), "the table's header says the stored type: " + e.out());
    }

    @Test
    void benchInferRunsOnTheStoredType() {
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "infer", "--model", q8.toString(), "--strategies", "dense",
                "--prompt", "8", "--decode", "4", "--repeats", "1", "--warmup", "0");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("q8_0 weights"), r.out());
        PrepareCommandTest.Run b = PrepareCommandTest.run("bench", "infer", "--model", bf16.toString(), "--strategies", "dense",
                "--prompt", "8", "--decode", "4", "--repeats", "1", "--warmup", "0", "--batch", "1,2");
        assertEquals(0, b.status(), b.err());
        assertTrue(b.out().contains("bf16 weights"), b.out());
    }

    @Test
    void theDirectoryHoldsWhatInferenceNeedsAndConfigJsonSaysTheType() throws IOException {
        assertEquals(List.of(".checkpoint.lock", "config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"),
                PrepareCommandTest.files(q8));
        for (String f : List.of(ModelFiles.TOKENIZER, TrainerState.FILE)) {
            assertEquals(Files.readString(model.resolve(f)), Files.readString(q8.resolve(f)), f);
        }
        assertEquals("q8_0", JSON.readTree(q8.resolve(ModelFiles.CONFIG).toFile()).path(ConfigJson.QUANTIZATION).asText());
        assertEquals("bf16", JSON.readTree(bf16.resolve(ModelFiles.CONFIG).toFile()).path(ConfigJson.QUANTIZATION).asText());
        assertEquals(ModelFiles.readConfig(model), ModelFiles.readConfig(q8));
    }

    /** model.safetensors: 1.125 bytes per weight (q8_0) and 2 (bf16), besides the fp32 norm gains and the header. */
    @Test
    void theFileTakesOnePointOneTwoFiveBytesPerWeightInQ8AndTwoInBf16() throws IOException {
        ModelConfig c = ModelFiles.readConfig(model);
        long weights = 0, norms = 0;
        for (ParamLayout.Tensor t : ParamLayout.of(c).tensors()) {
            if (ModelFiles.quantized(t)) {
                weights += t.numel();
                assertEquals(0, t.shape()[t.shape().length - 1] % 32, t.name()); // whole blocks: see trainAndQuantize
            } else {
                norms += t.numel();
            }
        }
        for (Path m : List.of(model, q8, bf16)) {
            Path f = m.resolve(ModelFiles.MODEL);
            long header = 8 + headerLength(f), bytes = Files.size(f) - header - 4 * norms;
            double perWeight = bytes / (double) weights;
            assertEquals(m == model ? 4.0 : m == q8 ? 1.125 : 2.0, perWeight, 0.0, m + ": " + bytes + " bytes for " + weights + " weights");
        }
        try (SafeTensors st = SafeTensors.open(q8.resolve(ModelFiles.MODEL))) {
            SafeTensors.Info up = st.info("model.layers.0.mlp.up_proj.weight"),
                    scale = st.info("model.layers.0.mlp.up_proj.weight.scale");
            assertEquals(SafeTensors.DType.I8, up.dtype());
            assertEquals(SafeTensors.DType.F32, scale.dtype());
            assertEquals(List.of(c.nFfd(), c.dFfd(), c.dEmb() / 32), java.util.Arrays.stream(scale.shape()).boxed().toList());
            assertEquals(SafeTensors.DType.F32, st.info("model.norm.weight").dtype());
        }
    }

    private static long headerLength(Path f) throws IOException {
        byte[] b = new byte[8];
        try (var in = Files.newInputStream(f)) {
            assertEquals(8, in.read(b));
        }
        return java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
    }

    @Test
    void badInputIsOneLineAndStatusTwo() throws IOException {
        Path out = dir.resolve("out");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", dir.resolve("none").toString(), "--dtype",
                "q8_0", "--out", out.toString()), "--model " + dir.resolve("none") + ": no such directory");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q4",
                "--out", out.toString()), "unknown weight type 'q4': use q8_0 or bf16");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "f32",
                "--out", out.toString()), "quantize writes q8_0 or bf16");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q8_0",
                "--out", model.toString()), "is the --model directory");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q8_0",
                "--out", model.resolve(".").toString()), "is the --model directory");
        for (String type : List.of("q8_0", "bf16")) { // already quantized, to the same type or another
            for (Path m : List.of(q8, bf16)) {
                TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", m.toString(), "--dtype", type,
                        "--out", out.toString()), "--model " + m + " is already quantized (" + (m == q8 ? "q8_0" : "bf16"));
            }
        }
        assertFalse(Files.exists(out), "nothing written");

        // a corrupt checkpoint: a truncated model.safetensors, a config.json of another shape, a bad quantization key
        Path corrupt = copyOf(model, "corrupt");
        byte[] w = Files.readAllBytes(corrupt.resolve(ModelFiles.MODEL));
        Files.write(corrupt.resolve(ModelFiles.MODEL), java.util.Arrays.copyOf(w, w.length / 2));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", corrupt.toString(), "--dtype", "q8_0",
                "--out", out.toString()), "not a valid safetensors file");
        Path other = copyOf(model, "other-shape");
        ModelConfig c = ModelFiles.readConfig(model);
        Files.writeString(other.resolve(ModelFiles.CONFIG), ConfigJson.toJson(c.toBuilder().dFfd(2 * c.dFfd()).build()));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", other.toString(), "--dtype", "bf16",
                "--out", out.toString()), "up_proj.weight has shape");
        Path unknown = copyOf(q8, "q4");
        Files.writeString(unknown.resolve(ModelFiles.CONFIG), Files.readString(q8.resolve(ModelFiles.CONFIG)).replace("\"q8_0\"", "\"q4_0\""));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", unknown.toString(), "--dtype", "q8_0",
                "--out", out.toString()), "quantization must be \"q8_0\" or \"bf16\"");
        TrainCommandTest.assertOneLineError(generate(unknown), "got \"q4_0\", which this dsmoe does not know");
        assertFalse(Files.exists(out), "nothing written");

        // an --out that holds anything is left alone
        Path full = Files.createDirectories(dir.resolve("full"));
        Files.writeString(full.resolve("notes.txt"), "mine");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q8_0",
                "--out", full.toString()), "exists and is not empty (it holds notes.txt)");
        assertEquals(List.of("notes.txt"), PrepareCommandTest.files(full));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q8_0",
                "--out", full.resolve("notes.txt").toString()), "exists and is not a directory");
        assertEquals("mine", Files.readString(full.resolve("notes.txt")));
    }

    /** An empty --out, or one holding only what a killed quantize leaves (the lock, a temporary file), is written. */
    @Test
    void anEmptyOutOrOneWithOnlyAKilledRunsTemporaryFilesIsWritten() throws IOException {
        Path empty = Files.createDirectories(dir.resolve("empty"));
        assertEquals(0, PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q8_0", "--out", empty.toString()).status());
        Path killed = Files.createDirectories(dir.resolve("killed"));
        Files.writeString(killed.resolve(".checkpoint.lock"), "");
        Files.writeString(killed.resolve(".model.safetensors.dsmoe-0123456789abcdef.tmp"), "half");
        PrepareCommandTest.Run r = PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q8_0", "--out",
                killed.toString());
        assertEquals(0, r.status(), r.err());
        assertEquals(PrepareCommandTest.files(q8), PrepareCommandTest.files(killed), "the stale temporary file is gone");
        assertEquals(-1, Files.mismatch(q8.resolve(ModelFiles.MODEL), killed.resolve(ModelFiles.MODEL)), "quantizing is deterministic");
    }

    @Test
    void aDtypeOtherThanTheStoredOneIsRefusedNamingTheFix() {
        TrainCommandTest.assertOneLineError(generate(q8, "--dtype", "f32"),
                "--dtype f32: " + q8 + " holds q8_0 weights (made by 'dsmoe quantize'), which load only as they are; drop --dtype");
        TrainCommandTest.assertOneLineError(generate(bf16, "--dtype", "q8_0"), "holds bf16 weights");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", q8.toString(), "--dtype", "bf16"),
                "holds q8_0 weights");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "infer", "--model", bf16.toString(), "--dtype", "f32"),
                "holds bf16 weights");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "infer", "--model", bf16.toString(), "--dtype", "f32",
                "--batch", "2"), "holds bf16 weights");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("serve", "--model", q8.toString(), "--dtype", "bf16", "--port", "0"),
                "holds q8_0 weights");
    }

    @Test
    void trainingCannotResumeAQuantizedCheckpoint() {
        for (Path m : List.of(q8, bf16)) {
            TrainCommandTest.assertOneLineError(PrepareCommandTest.run("train", "--resume", m.toString(), "--steps", "5"),
                    m + " holds a quantized checkpoint (" + (m == q8 ? "q8_0" : "bf16") + " weights, made by 'dsmoe quantize'): it has "
                            + "no fp32 weights to train");
        }
    }

    /** A scale tensor of the wrong shape or type is named on load, in one line. */
    @Test
    void aScaleTensorOfTheWrongShapeOrTypeIsNamedOnLoad() throws IOException {
        String name = "model.layers.0.attn.k_proj.weight.scale";
        Path shape = rewritten("bad-scale-shape", name, SafeTensors.DType.F32, true);
        TrainCommandTest.assertOneLineError(generate(shape), "tensor " + name + " has shape [");
        TrainCommandTest.assertOneLineError(generate(shape), "a q8_0 weight [");
        Path type = rewritten("bad-scale-type", name, SafeTensors.DType.I32, false);
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", type.toString(), "--data", data.toString(),
                "--seq", "16"),
                "tensor " + name + " has dtype I32, a q8_0 weight");
        Path quants = rewritten("bad-quant-type", "model.layers.0.attn.k_proj.weight", SafeTensors.DType.U8, false);
        TrainCommandTest.assertOneLineError(generate(quants), "k_proj.weight has dtype U8, a q8_0 checkpoint needs I8");
    }

    /**
     * A copy of the q8_0 checkpoint whose tensor {@code name} is rewritten as {@code type} (of the
     * same element size) and, if {@code widen}, one column wider (zeros).
     */
    private Path rewritten(String dirName, String name, SafeTensors.DType type, boolean widen) throws IOException {
        Path d = copyOf(q8, dirName);
        SafeTensors.Writer w = new SafeTensors.Writer();
        try (SafeTensors st = SafeTensors.open(q8.resolve(ModelFiles.MODEL))) {
            for (SafeTensors.Info i : st.tensors().values()) {
                int[] s = i.shape().clone();
                SafeTensors.DType t = i.dtype();
                java.lang.foreign.MemorySegment bytes = st.segment(i.name());
                if (i.name().equals(name)) {
                    assertEquals(t.bytes, type.bytes);
                    t = type;
                    if (widen) {
                        s[s.length - 1]++;
                        bytes = java.lang.foreign.Arena.ofAuto().allocate(i.numel() / (s[s.length - 1] - 1) * s[s.length - 1] * t.bytes);
                    }
                }
                java.lang.foreign.MemorySegment b = bytes;
                w.add(i.name(), t, s, ch -> SafeTensors.Writer.write(ch, b));
            }
            w.write(d.resolve(ModelFiles.MODEL));
        }
        return d;
    }

    private Path copyOf(Path m, String name) throws IOException {
        Path d = Files.createDirectories(dir.resolve(name));
        for (String f : List.of(ModelFiles.CONFIG, ModelFiles.MODEL, ModelFiles.TOKENIZER)) Files.copy(m.resolve(f), d.resolve(f));
        return d;
    }

    @Test
    void helpSaysWhatItWrites() {
        PrepareCommandTest.Run r = PrepareCommandTest.run("quantize", "--help");
        assertEquals(0, r.status());
        assertTrue(r.out().contains("memory-mapped") && r.out().contains("q8_0|bf16"), r.out());
        PrepareCommandTest.Run g = PrepareCommandTest.run("generate", "--help");
        assertTrue(g.out().contains("dsmoe quantize"), g.out());
        assertTrue(PrepareCommandTest.run("--help").out().contains("quantize"));
    }

    /** The weights as stored: {@code MatVec.DType} named as config.json names it. */
    @Test
    void theStoredTypeIsReadBack() throws IOException {
        assertEquals(MatVec.DType.Q8_0, ModelFiles.readStored(q8).quantization());
        assertEquals(MatVec.DType.BF16, ModelFiles.readStored(bf16).quantization());
        assertEquals(null, ModelFiles.readStored(model).quantization());
    }
}
