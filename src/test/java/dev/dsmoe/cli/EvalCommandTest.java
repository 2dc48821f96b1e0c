package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ./dsmoe eval} end to end: a tiny prepared corpus, a tiny DS-MoE trained a few steps, then each kind of run. */
class EvalCommandTest {

    @TempDir
    static Path shared;
    static Path data, run;

    @TempDir
    Path dir;

    static final ObjectMapper JSON = new ObjectMapper();

    @BeforeAll
    static void prepareAndTrain() throws IOException {
        Path src = PrepareCommandTest.corpus(shared);
        data = shared.resolve("data");
        PrepareCommandTest.Run p = PrepareCommandTest.run("prepare", "--input", src.toString(), "--out", data.toString(),
                "--vocab-size", "300", "--val-fraction", "0.3");
        assertEquals(0, p.status(), p.err());
        run = shared.resolve("run");
        List<String> a = new ArrayList<>(List.of("train", "--data", data.toString(), "--out", run.toString(), "--steps", "3",
                "--eval-every", "0"));
        a.addAll(List.of(TrainCommandTest.TINY));
        PrepareCommandTest.Run t = PrepareCommandTest.run(a.toArray(String[]::new));
        assertEquals(0, t.status(), t.err());
    }

    static PrepareCommandTest.Run eval(String... args) {
        List<String> a = new ArrayList<>(List.of("eval", "--model", run.toString()));
        a.addAll(List.of(args));
        return PrepareCommandTest.run(a.toArray(String[]::new));
    }

    static List<JsonNode> jsonLines(String out) throws IOException {
        List<JsonNode> l = new ArrayList<>();
        for (String line : out.lines().toList()) l.add(JSON.readTree(line));
        return l;
    }

    @Test
    void defaultStrategiesOfADsMoeWithTheDataFromTrainerState() {
        PrepareCommandTest.Run r = eval("--seq", "16"); // no --data: trainer_state.json names it
        assertEquals(0, r.status(), r.err());
        String out = r.out();
        assertTrue(out.contains("ds-moe d=32 layers=1 N_att=2 N_ffd=4"), out);
        assertTrue(out.contains("windows of 16"), out);
        for (String s : List.of("| dense |", "| top-k:1 |", "| threshold:0.48 |", "| threshold-top-k:0.48 |")) {
            assertTrue(out.contains(s), s + " in\n" + out);
        }
        assertTrue(out.contains("| dense | ") && out.contains("| 2.00/2 | 4.00/4 |") && out.contains("| 100.0 |"), out);
    }

    @Test
    void jsonGivesOneObjectPerStrategyWithConsistentFigures() throws IOException {
        PrepareCommandTest.Run r = eval("--data", data.toString(), "--strategy", "dense", "--strategy", "top-k:att=2,mlp=4",
                "--strategy", "top-k:1", "--json");
        assertEquals(0, r.status(), r.err());
        List<JsonNode> rows = jsonLines(r.out());
        assertEquals(3, rows.size(), r.out());
        JsonNode dense = rows.get(0), all = rows.get(1), one = rows.get(2);
        assertEquals("perplexity", dense.get("kind").asText());
        assertEquals("dense", dense.get("selection").asText());
        assertEquals(32, dense.get("seq").asInt(), "default window: the model's context");
        assertEquals(Math.exp(dense.get("loss").asDouble()), dense.get("perplexity").asDouble(), 1e-9 * dense.get("perplexity").asDouble());
        assertEquals(dense.get("tokens").asLong() - dense.get("windows").asLong(), dense.get("tokens_scored").asLong());
        assertEquals(dense.get("loss").asDouble(), all.get("loss").asDouble(), 1e-6, "top-k with K = N is dense");
        assertEquals(1.0, one.get("mean_active_mlp").asDouble(), 0);
        assertEquals(2.0, one.get("mean_active_attention").asDouble(), 0);
        assertTrue(one.get("active_params_per_token").asDouble() < dense.get("active_params_per_token").asDouble());
        assertTrue(one.get("active_hidden_percent").asDouble() < 100);
        assertEquals(1, one.get("active_mlp_per_layer").size());

        // --max-tokens limits what is read
        PrepareCommandTest.Run q = eval("--strategy", "dense", "--max-tokens", "40", "--seq", "16", "--json");
        assertEquals(0, q.status(), q.err());
        JsonNode lim = jsonLines(q.out()).getFirst();
        assertEquals(40, lim.get("tokens").asLong());
        assertEquals(37, lim.get("tokens_scored").asLong());
    }

    @Test
    void sweepWritesTableAndPngsWithDecodeSpeed() throws IOException {
        Path out = dir.resolve("sweep");
        PrepareCommandTest.Run r = eval("--strategy", "dense", "--sweep", "--eps", "0,0.48,2", "--out", out.toString());
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("sweep: threshold ε on MLP routers (MoA dense)"), r.out());
        assertTrue(r.out().contains("| threshold:0.48 | 0.48 |"), r.out());
        assertTrue(r.out().contains("| tokens scored | decode tok/s | decode vs dense |"), r.out());
        // the default: 16 tokens (half the context of 32) after a 16-token prompt, 3 runs
        assertTrue(r.out().contains("decode tok/s: single-stream decode of 16 tokens after a 16-token prompt"), r.out());
        for (String f : List.of("sweep.md", "sweep.csv", "sweep.json", "sweep.png", "sweep-speed.png")) {
            assertTrue(Files.isRegularFile(out.resolve(f)), f);
        }
        for (String f : List.of("sweep.png", "sweep-speed.png")) {
            byte[] png = Files.readAllBytes(out.resolve(f));
            assertArrayEquals(new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, Arrays.copyOf(png, 8), f);
        }
        JsonNode points = JSON.readTree(out.resolve("sweep.json").toFile());
        assertEquals(4, points.size());
        for (JsonNode p : points) {
            double tps = p.get("decode_tok_s").asDouble();
            assertTrue(tps > 0 && Double.isFinite(tps), p.toString());
            assertTrue(p.get("decode_vs_dense").asDouble() > 0, p.toString());
            assertEquals(16, p.get("decode_tokens").asInt());
            assertEquals(3, p.get("decode_repeats").asInt());
        }

        PrepareCommandTest.Run j = eval("--no-perplexity", "--sweep", "--sweep-attention", "--eps", "1", "--json", "--max-tokens", "64",
                "--sweep-decode", "8", "--sweep-repeats", "1");
        assertEquals(0, j.status(), j.err());
        List<JsonNode> rows = jsonLines(j.out());
        assertEquals(2, rows.size(), j.out());
        assertEquals("sweep", rows.get(1).get("kind").asText());
        assertEquals("threshold:att=1,mlp=1", rows.get(1).get("selection").asText());
        assertTrue(rows.get(0).get("epsilon").isNull());
        assertEquals(1.0, rows.get(0).get("decode_vs_dense").asDouble(), 0);
        assertEquals(8, rows.get(1).get("decode_tokens").asInt());
        assertEquals(24, rows.get(1).get("decode_prompt_tokens").asInt(), "the default prompt, 32, cut to what the context leaves");
        assertEquals(1, rows.get(1).get("decode_repeats").asInt());
        assertTrue(rows.get(1).get("decode_tok_s").asDouble() > 0);
        assertTrue(Files.isRegularFile(run.resolve("eval").resolve("sweep-attention.png")), "default --out: MODEL/eval");
        assertTrue(Files.isRegularFile(run.resolve("eval").resolve("sweep-attention-speed.png")));

        // --sweep-decode 0: no timing, the table and files as before, and no stale speed plot
        PrepareCommandTest.Run z = eval("--strategy", "dense", "--sweep", "--eps", "0.48", "--out", out.toString(), "--sweep-decode", "0");
        assertEquals(0, z.status(), z.err());
        assertTrue(z.out().contains("| active hidden % | tokens scored |\n"), z.out());
        assertTrue(!z.out().contains("decode"), z.out());
        assertTrue(Files.notExists(out.resolve("sweep-speed.png")), "the timed run's speed plot is gone");
        assertEquals("selection,epsilon,loss,perplexity,mean_active_attention,mean_active_mlp,active_params_per_token,"
                + "active_hidden_percent,tokens_scored", Files.readAllLines(out.resolve("sweep.csv")).getFirst());
        assertTrue(JSON.readTree(out.resolve("sweep.json").toFile()).get(1).get("decode_tok_s") == null);
        PrepareCommandTest.Run zj = eval("--no-perplexity", "--sweep", "--eps", "1", "--json", "--max-tokens", "64",
                "--out", out.toString(), "--sweep-decode", "0");
        assertEquals(0, zj.status(), zj.err());
        assertTrue(jsonLines(zj.out()).stream().noneMatch(p -> p.has("decode_tok_s")), zj.out());
    }

    @Test
    void zeroShotFromAJsonlFileAndTheBuiltInCodeTask() throws IOException {
        Path mc = Files.writeString(dir.resolve("mc.jsonl"), """
                {"context": "class F1 {\\n    int x = ", "choices": ["1;", "\\"a string\\";", "new Object[] {};"], "gold": 0}
                {"context": "class F2 {", "choices": ["\\n    int x = 2;", " ) ) )"], "gold": 0}
                """);
        PrepareCommandTest.Run r = eval("--no-perplexity", "--choices", mc.toString(), "--code-task", "--code-task-context", "8",
                "--code-task-continuation", "4", "--code-task-size", "12", "--strategy", "dense", "--strategy", "top-k:1");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("code task: 12 items from the validation split (8-token contexts, 4-token continuations, "
                + "4 choices); chance 25.0%"), r.out());
        assertTrue(r.out().contains("mc.jsonl: 2 items; chance 41.7%"), r.out());
        assertTrue(r.out().contains("| acc | acc_norm | items |"), r.out());

        PrepareCommandTest.Run j = eval("--no-perplexity", "--code-task", "--code-task-context", "8", "--code-task-continuation", "4",
                "--code-task-size", "12", "--strategy", "dense", "--json");
        assertEquals(0, j.status(), j.err());
        JsonNode row = jsonLines(j.out()).getFirst();
        assertEquals("zero-shot", row.get("kind").asText());
        assertEquals("code", row.get("task").asText());
        assertEquals(12, row.get("items").asInt());
        assertEquals(0.25, row.get("chance").asDouble(), 1e-12);
        double acc = row.get("acc").asDouble();
        assertEquals(Math.round(acc * 12), acc * 12, 1e-9);
        // deterministic: the same items and scores again
        PrepareCommandTest.Run again = eval("--no-perplexity", "--code-task", "--code-task-context", "8", "--code-task-continuation",
                "4", "--code-task-size", "12", "--strategy", "dense", "--json");
        assertEquals(j.out().replaceAll("\"seconds\":[^,}]*", ""), again.out().replaceAll("\"seconds\":[^,}]*", ""));
    }

    @Test
    void badInputEndsWithOneClearLine() throws IOException {
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", dir.resolve("nope").toString()),
                "nope: no such directory");
        Path noWeights = Files.createDirectories(dir.resolve("noweights"));
        Files.copy(run.resolve("config.json"), noWeights.resolve("config.json"));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", noWeights.toString(), "--data", data.toString()),
                "no model.safetensors");
        Path noVal = Files.createDirectories(dir.resolve("noval"));
        Files.copy(data.resolve("meta.json"), noVal.resolve("meta.json"));
        TrainCommandTest.assertOneLineError(eval("--data", noVal.toString()), "no val.bin");
        TrainCommandTest.assertOneLineError(eval("--strategy", "sparse:3"), "unknown expert selection 'sparse:3'");
        TrainCommandTest.assertOneLineError(eval("--strategy", "top-k:9"), "exceeds num_mlp_experts (4)");
        TrainCommandTest.assertOneLineError(eval("--seq", "33"), "--seq 33 exceeds the model's context (max_position_embeddings 32)");
        TrainCommandTest.assertOneLineError(eval("--sweep", "--eps", "0,-1"), "--eps values must be finite and >= 0");
        TrainCommandTest.assertOneLineError(eval("--sweep", "--sweep-decode", "-1"), "--sweep-decode must be >= 0, got -1");
        TrainCommandTest.assertOneLineError(eval("--sweep", "--sweep-decode", "32"),
                "--sweep-decode 32 leaves no room for a prompt in the model's context (max_position_embeddings 32); use at most 31");
        TrainCommandTest.assertOneLineError(eval("--sweep", "--sweep-repeats", "0"), "--sweep-repeats must be >= 1, got 0");
        TrainCommandTest.assertOneLineError(eval("--sweep-decode", "8"), "--sweep-decode goes with --sweep");
        TrainCommandTest.assertOneLineError(eval("--sweep-repeats", "2"), "--sweep-repeats goes with --sweep");

        // an empty validation shard: a corpus prepared with no validation documents
        Path src = PrepareCommandTest.corpus(dir);
        Path emptyVal = dir.resolve("emptyval");
        assertEquals(0, PrepareCommandTest.run("prepare", "--input", src.toString(), "--out", emptyVal.toString(),
                "--vocab-size", "300", "--val-fraction", "0").status());
        TrainCommandTest.assertOneLineError(eval("--data", emptyVal.toString()), "the validation shard is empty");

        Path bad = Files.writeString(dir.resolve("bad.jsonl"), """
                {"context": "a", "choices": ["x", "y"], "gold": 1}
                {"context": "a", "choices": ["x", "y"], "gold": 5}
                """);
        TrainCommandTest.assertOneLineError(eval("--no-perplexity", "--choices", bad.toString()),
                "bad.jsonl line 2: gold 5 is not a choice index");
        TrainCommandTest.assertOneLineError(eval("--no-perplexity", "--choices", dir.resolve("missing.jsonl").toString()),
                "missing.jsonl: no such file");
        TrainCommandTest.assertOneLineError(eval("--no-perplexity"), "nothing to evaluate");

        // data or a tokenizer with more ids than the model's vocabulary
        Path bigVocab = dir.resolve("bigvocab");
        PrepareCommandTest.Run big = PrepareCommandTest.run("prepare", "--input", src.toString(), "--out", bigVocab.toString(),
                "--vocab-size", "320", "--val-fraction", "0.3");
        assertEquals(0, big.status(), big.err());
        TrainCommandTest.assertOneLineError(eval("--data", bigVocab.toString()),
                "ids but the model's vocab_size is 300; use the data");
        Path wrongTok = Files.createDirectories(dir.resolve("wrongtok"));
        for (String f : List.of("config.json", "model.safetensors")) Files.copy(run.resolve(f), wrongTok.resolve(f));
        Files.copy(bigVocab.resolve("tokenizer.json"), wrongTok.resolve("tokenizer.json"));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", wrongTok.toString(), "--data", data.toString()),
                "ids but the model's vocab_size is 300; it is not this model's tokenizer");

        // a model directory without trainer_state.json needs --data
        Path bare = Files.createDirectories(dir.resolve("bare"));
        for (String f : List.of("config.json", "model.safetensors", "tokenizer.json")) Files.copy(run.resolve(f), bare.resolve(f));
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", bare.toString()), "--data DIR is required");
        assertEquals(0, PrepareCommandTest.run("eval", "--model", bare.toString(), "--data", data.toString(), "--strategy", "dense",
                "--max-tokens", "20").status());
    }
}
