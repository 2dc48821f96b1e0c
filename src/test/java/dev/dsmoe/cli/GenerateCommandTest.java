package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.RandomParams;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.IOException;
import java.util.List;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ./dsmoe generate} on a tiny model trained in the test. */
class GenerateCommandTest {

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void train() throws IOException {
        Path data = TrainCommandTest.prepareData(dir);
        model = dir.resolve("model");
        PrepareCommandTest.Run r = PrepareCommandTest.run(TrainCommandTest.argsFor(data, "--out", model.toString(), "--steps", "3"));
        assertEquals(0, r.status(), r.err());
    }

    @Test
    void greedyGenerationStreamsTextAndReportsSpeedAndExperts() {
        PrepareCommandTest.Run r = PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class F1 {",
                "--max-tokens", "5", "--temperature", "0", "--strategy", "top-k:2");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().startsWith("class F1 {"), r.out());
        assertTrue(r.err().contains("decode") && r.err().contains("MLP 2.00 of 4"), r.err());
        PrepareCommandTest.Run again = PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class F1 {",
                "--max-tokens", "5", "--temperature", "0", "--strategy", "top-k:2");
        assertEquals(r.out(), again.out(), "greedy decoding is deterministic");
    }

    /** {@code bench infer --batch}: a row per (selection, B) with aggregate = B x per-sequence tokens/s, the plot written; bad B is one line. */
    @Test
    void benchInferBatchReportsAggregateAndPerSequenceSpeed() throws IOException {
        Path png = dir.resolve("batch.png");
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--batch", "1,3",
                "--strategies", "dense;top-k:2", "--prompt", "5", "--decode", "4", "--repeats", "1", "--warmup", "0",
                "--plot", png.toString());
        assertEquals(0, r.status(), r.err());
        List<String> rows = r.out().lines().filter(l -> l.startsWith("| model ") || l.matches("\\| \\S+ \\| \\S+ \\| \\d+ \\|.*")).toList();
        assertEquals(5, rows.size(), r.out());
        for (String row : rows.subList(1, rows.size())) {
            String[] f = row.split("\\|");
            double b = Double.parseDouble(f[3].trim()), aggregate = Double.parseDouble(f[4].trim()), per = Double.parseDouble(f[5].trim());
            assertEquals(b * per, aggregate, 0.01 * aggregate + 0.1, row);
        }
        assertTrue(java.nio.file.Files.size(png) > 1000, "the plot is a PNG");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--batch", "0"), "--batch sizes must be >= 1");
    }

    /**
     * {@code bench infer} measures the memory read probe after its rows and gives each decode's GB/s
     * as a fraction of it (a last column, equal to decode GB/s over the probe's figure), and in
     * {@code --json} one more object; {@code --no-probe} leaves both out.
     */
    @Test
    void benchInferGivesDecodeGbPerSecondAsAFractionOfTheReadProbe() throws IOException {
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--strategies", "dense",
                "--prompt", "5", "--decode", "4", "--repeats", "1", "--warmup", "0");
        assertEquals(0, r.status(), r.err());
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("read probe: ([0-9.]+) GB/s").matcher(r.out());
        assertTrue(m.find(), r.out());
        double read = Double.parseDouble(m.group(1));
        assertTrue(read > 0, r.out());
        assertTrue(r.out().contains("| decode GB/s | of probe |"), r.out());
        String row = r.out().lines().filter(l -> l.startsWith("| model | dense |")).findFirst().orElseThrow();
        String[] f = row.split("\\|");
        double gbs = Double.parseDouble(f[10].trim()), fraction = Double.parseDouble(f[11].trim());
        assertEquals(gbs / read, fraction, 0.006 + 0.01 * fraction, row);

        PrepareCommandTest.Run json = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--strategies", "dense",
                "--prompt", "5", "--decode", "4", "--repeats", "1", "--warmup", "0", "--json");
        assertEquals(0, json.status(), json.err());
        com.fasterxml.jackson.databind.ObjectMapper om = new com.fasterxml.jackson.databind.ObjectMapper();
        List<String> objects = json.out().lines().filter(l -> l.startsWith("{")).toList();
        assertEquals(2, objects.size(), json.out());
        assertTrue(om.readTree(objects.get(1)).get("readProbeGBPerSecond").asDouble() > 0, json.out());

        PrepareCommandTest.Run off = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--strategies", "dense",
                "--prompt", "5", "--decode", "4", "--repeats", "1", "--warmup", "0", "--no-probe");
        assertEquals(0, off.status(), off.err());
        assertFalse(off.out().contains("read probe") || off.out().contains("of probe"), off.out());
    }

    /**
     * {@code bench infer --profile}: a row per selection splitting a decoded token's microseconds,
     * and another a prompt token's, into weight products and the rest (the two add up to the step,
     * each positive), and a table by layer phase whose rows (with "other") add up to the same
     * step; {@code --chunk} is taken and shown in the header.
     */
    @Test
    void benchInferProfileSplitsTheStepIntoProductsAndTheRest() {
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--strategies",
                "dense;top-k:2", "--prompt", "6", "--decode", "5", "--repeats", "1", "--warmup", "0", "--chunk", "4", "--profile");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("(chunks of 4)"), r.out());
        List<String> rows = r.out().lines().filter(l -> l.matches("\\| \\S+ \\| \\S+ \\| \\d+ \\| \\d+ \\| -?\\d+ \\| -?\\d+% \\|")).toList();
        assertEquals(4, rows.size(), r.out()); // decode, then prefill, per selection
        for (String row : rows) {
            String[] f = row.split("\\|");
            double step = Double.parseDouble(f[3].trim()), products = Double.parseDouble(f[4].trim()), outside = Double.parseDouble(f[5].trim());
            assertTrue(products > 0 && products <= step + 1, row);
            assertEquals(step, products + outside, 1.5, row);
        }
        // by phase: every phase of both selections, each non-negative, the phases and "other" adding up to the step
        java.util.Map<String, double[]> totals = new java.util.LinkedHashMap<>();
        List<String> phases = r.out().lines().filter(l -> l.matches("\\| \\S+ \\| \\S+ \\| [^|]+ \\| -?[\\d.]+ \\| -?[\\d.]+% \\| -?[\\d.]+ \\| -?[\\d.]+% \\|"))
                .toList();
        assertEquals(2 * (dev.dsmoe.infer.Engine.Phase.values().length + 1), phases.size(), r.out());
        for (String row : phases) {
            String[] f = row.split("\\|");
            double step = Double.parseDouble(f[4].trim()), prefill = Double.parseDouble(f[6].trim());
            double[] t = totals.computeIfAbsent(f[2].trim(), k -> new double[2]);
            t[0] += step;
            t[1] += prefill;
            if (!f[3].trim().startsWith("other")) assertTrue(step >= 0 && prefill >= 0, row);
        }
        assertEquals(2, totals.size(), r.out());
        for (int i = 0; i < rows.size(); i++) { // the decode table's rows, then the prefill table's
            String[] f = rows.get(i).split("\\|");
            double[] t = totals.get(f[2].trim());
            assertEquals(Double.parseDouble(f[3].trim()), t[i < 2 ? 0 : 1], 1.5, rows.get(i));
        }
        assertTrue(r.out().contains("attention over the cache") && r.out().contains("MLP output products"), r.out());
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--chunk", "0"),
                "--chunk must be >= 1");
    }

    /** {@code bench infer} over several presets (single-stream and {@code --batch}) holds them together and times every row round by round, and says so. */
    @Test
    void benchInferTimesSeveralPresetsTogether() {
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "infer", "--presets", "dense-small,dsmoe-small", "--strategies",
                "default", "--prompt", "5", "--decode", "4", "--repeats", "1", "--warmup", "0");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("timing: all rows round by round"), r.out());
        List<String> rows = r.out().lines().filter(l -> l.matches("\\| (dense|dsmoe)-small \\| .*")).toList();
        assertEquals(2, rows.size(), r.out());
        assertTrue(rows.get(0).startsWith("| dense-small | dense |") && rows.get(1).startsWith("| dsmoe-small |"), r.out());

        PrepareCommandTest.Run batched = PrepareCommandTest.run("bench", "infer", "--presets", "dense-small,dsmoe-small", "--strategies",
                "default", "--prompt", "4", "--decode", "3", "--repeats", "1", "--warmup", "0", "--batch", "1,2");
        assertEquals(0, batched.status(), batched.err());
        assertTrue(batched.out().contains("timing: all rows round by round"), batched.out());
        assertEquals(4, batched.out().lines().filter(l -> l.matches("\\| (dense|dsmoe)-small \\| \\S+ \\| [12] \\|.*")).count(), batched.out());
    }

    /**
     * {@code bench infer --model A --model B}: both models loaded and timed together, round by
     * round, on the first model's validation text, single-stream and batched; a row per (model,
     * selection), named by the model directory.
     */
    @Test
    void benchInferTimesSeveralModelsTogether() {
        Path q8 = dir.resolve("model-q8");
        if (!Files.isDirectory(q8)) {
            PrepareCommandTest.Run qz = PrepareCommandTest.run("quantize", "--model", model.toString(), "--dtype", "q8_0", "--out", q8.toString());
            assertEquals(0, qz.status(), qz.err());
        }
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--model", q8.toString(),
                "--strategies", "dense;top-k:2", "--prompt", "5", "--decode", "4", "--repeats", "1", "--warmup", "0");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("timing: all rows round by round") && r.out().contains("val.bin, teacher-forced)"), r.out());
        assertTrue(r.out().contains("fp32/q8_0") || r.out().contains("f32/q8_0"), r.out());
        List<String> rows = r.out().lines().filter(l -> l.matches("\\| model(-q8)? \\| \\S+ \\| \\d+ \\|.*")).toList();
        assertEquals(List.of("model dense", "model top-k:2", "model-q8 dense", "model-q8 top-k:2"),
                rows.stream().map(l -> l.split("\\|")[1].trim() + " " + l.split("\\|")[2].trim()).toList(), r.out());

        PrepareCommandTest.Run batched = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--model", q8.toString(),
                "--strategies", "dense", "--prompt", "4", "--decode", "3", "--repeats", "1", "--warmup", "0", "--batch", "1,2");
        assertEquals(0, batched.status(), batched.err());
        assertTrue(batched.out().contains("timing: all rows round by round"), batched.out());
        assertEquals(4, batched.out().lines().filter(l -> l.matches("\\| model(-q8)? \\| dense \\| [12] \\|.*")).count(), batched.out());
    }

    /**
     * {@code bench infer --model} reads the model's own validation text (the data its
     * trainer_state.json names) and says so; {@code --data} without a val.bin, or without
     * {@code --model}, is one line.
     */
    @Test
    void benchInferReadsTheModelsValidationText() throws IOException {
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--strategies", "dense",
                "--prompt", "5", "--decode", "4", "--repeats", "1", "--warmup", "0");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("val.bin, teacher-forced)"), r.out());
        Path empty = Files.createDirectories(dir.resolve("no-val"));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "infer", "--model", model.toString(), "--data",
                empty.toString()), "no val.bin");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "infer", "--data", empty.toString()), "--data needs --model");
    }

    /** {@code bench serve --llama-server}: a missing binary or a lone flag is one line before anything runs. */
    @Test
    void benchServeLlamaPeerFlagsAreCheckedFirst() {
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "serve", "--model", model.toString(),
                "--llama-server", dir.resolve("no-such-llama-server").toString(), "--llama-model", model.resolve("config.json").toString()),
                "llama-server not found");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("bench", "serve", "--model", model.toString(),
                "--llama-server", dir.resolve("x").toString()), "--llama-server and --llama-model go together");
    }

    /** {@code bench serve}: a row per concurrency with output tokens/s and latencies, over the real server. */
    @Test
    void benchServeMeasuresTheServerAtEachConcurrency() throws IOException {
        PrepareCommandTest.Run r = PrepareCommandTest.run("bench", "serve", "--model", model.toString(), "--concurrency", "1,3",
                "--prompt", "5", "--max-tokens", "6", "--requests", "1", "--plot", dir.resolve("serve.png").toString());
        assertEquals(0, r.status(), r.err());
        List<String> rows = r.out().lines().filter(l -> l.matches("\\| model \\| [^|]+ \\| \\d+ \\|.*")).toList();
        assertEquals(2, rows.size(), r.out());
        for (String row : rows) {
            String[] f = row.split("\\|");
            assertTrue(Double.parseDouble(f[4].trim()) > 0, row);
            assertTrue(Double.parseDouble(f[6].trim()) > 0, row);
        }
        assertTrue(java.nio.file.Files.size(dir.resolve("serve.png")) > 1000);
    }

    /** {@code --dtype q8_0} quantizes the trained fp32 checkpoint at load and generates; an unknown type is one line, status 2. */
    @Test
    void q8WeightsGenerateAndAnUnknownTypeIsOneLine() {
        PrepareCommandTest.Run r = PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class F1 {",
                "--max-tokens", "5", "--temperature", "0", "--strategy", "top-k:2", "--dtype", "q8_0");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().startsWith("class F1 {") && r.out().length() > "class F1 {".length(), r.out());
        assertTrue(r.err().contains("decode") && r.err().contains("MLP 2.00 of 4"), r.err());
        PrepareCommandTest.Run again = PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class F1 {",
                "--max-tokens", "5", "--temperature", "0", "--strategy", "top-k:2", "--dtype", "Q8_0");
        assertEquals(r.out(), again.out(), "greedy decoding with q8 weights is deterministic");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "x",
                "--dtype", "q4"), "unknown weight type 'q4': use f32, bf16 or q8_0");
    }

    @Test
    void badInputEndsWithOneClearLine() {
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", dir.resolve("none").toString(),
                "--prompt", "x"), "no such model directory");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "x",
                "--strategy", "sometimes"), "unknown expert selection");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", model.toString(),
                "--prompt", "int x = 1; ".repeat(40)), "the model's context is 32");
    }

    @Test
    void streamingReleasesOnlyWholeCharacters() throws IOException {
        Tokenizer tok = Tokenizer.load(model.resolve("tokenizer.json"));
        dev.dsmoe.tokenizer.StreamingText s = new dev.dsmoe.tokenizer.StreamingText(tok);
        StringBuilder seen = new StringBuilder();
        for (int b : "é€".getBytes(java.nio.charset.StandardCharsets.UTF_8)) seen.append(s.add(b & 0xff)); // byte tokens 0-255
        assertEquals("é€", seen.toString());
    }

    @Test
    void defaultStrategyIsTheModelsOwnAsTheHelpSays() {
        PrepareCommandTest.Run help = PrepareCommandTest.run("generate", "--help");
        assertTrue(help.out().contains("default"), help.out());
        PrepareCommandTest.Run r = PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class F1 {",
                "--max-tokens", "3", "--temperature", "0", "--strategy", "default");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.err().contains("strategy dense"), r.err()); // the test model is a DS-MoE: dense
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "x",
                "--strategy", "top-k:9"), "exceeds num_mlp_experts (4)");
    }

    /**
     * A model with 8 more rows than the tokenizer has ids, whose LM head makes one of those rows
     * the most likely token at every step: the final norm keeps only dimension 0, and only two
     * rows beyond the tokenizer read it, with opposite signs, so one of them wins whatever the sign.
     */
    @Test
    void aModelVocabLargerThanTheTokenizersSamplesOnlyTokensItCanDecode() throws IOException {
        int tokIds = Tokenizer.load(model.resolve("tokenizer.json")).vocabSize();
        ModelConfig c = ModelFiles.readConfig(model).toBuilder().tieWordEmbeddings(false).vocabSize(tokIds + 8).build().validate();
        ParamLayout layout = ParamLayout.of(c);
        float[] p = RandomParams.params(layout, 31);
        int d = c.dEmb();
        Arrays.fill(p, layout.byRole().finalNorm().off(), layout.byRole().finalNorm().off() + d, 0f);
        p[layout.byRole().finalNorm().off()] = 1f;
        int head = layout.tensor("lm_head.weight").off();
        Arrays.fill(p, head, head + c.vocabSize() * d, 0f);
        p[head + (tokIds + 2) * d] = 1f;
        p[head + (tokIds + 5) * d] = -1f;
        Path big = dir.resolve("big-vocab");
        Files.createDirectories(big);
        Files.writeString(big.resolve(ModelFiles.CONFIG), ConfigJson.toJson(c));
        ModelFiles.modelTensors(layout, p, SafeTensors.DType.F32).write(big.resolve(ModelFiles.MODEL));
        Files.copy(model.resolve("tokenizer.json"), big.resolve("tokenizer.json"));
        for (String temperature : new String[] {"0", "1"}) {
            PrepareCommandTest.Run r = PrepareCommandTest.run("generate", "--model", big.toString(), "--prompt", "class F1 {",
                    "--max-tokens", "8", "--temperature", temperature, "--top-k", "0");
            assertEquals(0, r.status(), "temperature " + temperature + ": " + r.err());
            assertTrue(r.out().startsWith("class F1 {"), r.out());
        }
    }

    /** A tokenizer.json of the test model with {@code edit} applied to its JSON tree, in a copy of the model directory. */
    private static Path withTokenizer(String name, java.util.function.Consumer<ObjectNode> edit) throws IOException {
        Path copy = dir.resolve(name);
        Files.createDirectories(copy);
        for (String f : new String[] {ModelFiles.CONFIG, ModelFiles.MODEL}) Files.copy(model.resolve(f), copy.resolve(f));
        ObjectMapper om = new ObjectMapper();
        ObjectNode root = (ObjectNode) om.readTree(model.resolve("tokenizer.json").toFile());
        edit.accept(root);
        Files.writeString(copy.resolve("tokenizer.json"), om.writeValueAsString(root));
        return copy;
    }

    @Test
    void tokenizerIdsBeyondTheModelAreRefusedBeforeAnyTableIsSized() throws IOException {
        Path m = withTokenizer("huge-id", root -> ((ArrayNode) root.get("added_tokens")).addObject()
                .put("id", 60_000_000).put("content", "<|huge|>").put("special", true));
        var bean = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long before = bean.getCurrentThreadAllocatedBytes();
        PrepareCommandTest.Run r = PrepareCommandTest.run("generate", "--model", m.toString(), "--prompt", "x");
        long allocated = bean.getCurrentThreadAllocatedBytes() - before;
        TrainCommandTest.assertOneLineError(r, m.resolve("tokenizer.json") + ": not a usable tokenizer.json: added token <|huge|> has id 60000000");
        assertTrue(r.err().contains("vocab_size 300"), r.err());
        assertTrue(allocated < 64 << 20, "reading the tokenizer allocated " + allocated + " bytes"); // a 60M-entry table is 240 MB
    }

    @Test
    void aBacktrackingSplitRegexEndsGenerateWithOneLineInsteadOfHanging() throws IOException {
        // refused when the file is read: it blows up on the probe texts
        Path nested = withTokenizer("regex-a", root -> ((ObjectNode) root.at("/pre_tokenizer/pretokenizers/0/pattern"))
                .put("Regex", "((a+)+)+$"));
        // passes the probes ('x' is not in them), and fails on the prompt
        Path onPrompt = withTokenizer("regex-x", root -> ((ObjectNode) root.at("/pre_tokenizer/pretokenizers/0/pattern"))
                .put("Regex", "((x+)+)+y"));
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            PrepareCommandTest.Run r = PrepareCommandTest.run("generate", "--model", nested.toString(),
                    "--prompt", "a".repeat(40) + "b");
            TrainCommandTest.assertOneLineError(r, nested.resolve("tokenizer.json")
                    + ": not a usable tokenizer.json: pre-tokenizer regex ((a+)+)+$ took over");
            r = PrepareCommandTest.run("generate", "--model", onPrompt.toString(), "--prompt", "x".repeat(40));
            TrainCommandTest.assertOneLineError(r, onPrompt.resolve("tokenizer.json") + ": pre-tokenizer regex ((x+)+)+y took over");
        });
    }

    /** Token ids of text with 2-, 3- and 4-byte characters, and single-byte tokens splitting such characters. */
    private static int[] multiByteTokens(Tokenizer tok, int repeats, long seed) {
        String text = "class F1 { int é = 1; } // x € 😀 中文\n".repeat(repeats);
        int[] ids = tok.encode(text);
        Random r = new Random(seed);
        int[] out = Arrays.copyOf(ids, ids.length + 40);
        for (int i = ids.length; i < out.length; i++) out[i] = 0x80 + r.nextInt(0x80); // stray continuation and lead bytes
        return out;
    }

    @Test
    void streamedTextIsTheOneShotDecode() throws IOException {
        Tokenizer tok = Tokenizer.load(model.resolve("tokenizer.json"));
        for (long seed = 0; seed < 20; seed++) {
            int[] ids = multiByteTokens(tok, 3, seed);
            // shuffle a window so that characters are cut at every kind of place
            Random r = new Random(seed);
            for (int i = ids.length - 1; i > 0; i--) {
                int j = r.nextInt(i + 1);
                int t = ids[i];
                ids[i] = ids[j];
                ids[j] = t;
            }
            dev.dsmoe.tokenizer.StreamingText s = new dev.dsmoe.tokenizer.StreamingText(tok);
            StringBuilder seen = new StringBuilder();
            for (int id : ids) seen.append(s.add(id));
            seen.append(s.finish());
            assertEquals(tok.decode(ids), seen.toString(), "seed " + seed);
        }
        // a character split over byte tokens comes out whole, once its last byte arrives
        dev.dsmoe.tokenizer.StreamingText s = new dev.dsmoe.tokenizer.StreamingText(tok);
        byte[] emoji = "😀".getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < 3; i++) assertEquals("", s.add(emoji[i] & 0xff));
        assertEquals("😀", s.add(emoji[3] & 0xff));
    }

    @Test
    void streamingDecodesEachTokensBytesOnce() throws IOException {
        Tokenizer tok = Tokenizer.load(model.resolve("tokenizer.json"));
        int[] ids = multiByteTokens(tok, 200, 1);
        assertTrue(ids.length > 4000, "tokens: " + ids.length);
        dev.dsmoe.tokenizer.StreamingText s = new dev.dsmoe.tokenizer.StreamingText(tok);
        var bean = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        int half = ids.length / 2;
        for (int i = 0; i < half; i++) s.add(ids[i]);
        long before = bean.getCurrentThreadAllocatedBytes();
        for (int i = half; i < ids.length; i++) s.add(ids[i]);
        long perToken = (bean.getCurrentThreadAllocatedBytes() - before) / (ids.length - half);
        // re-decoding the whole completion at each token allocated ~10 bytes per token so far: ~20 KB here
        assertTrue(perToken < 2048, perToken + " bytes allocated per token late in a " + ids.length + "-token completion");
        s.finish();
        assertEquals(tok.decodeBytes(ids, 0, ids.length).length, s.bytesDecoded());
        assertFalse(s.text().isEmpty());
    }
}
