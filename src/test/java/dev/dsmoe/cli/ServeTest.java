package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.Generator;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.Sampler;
import dev.dsmoe.infer.Scheduler;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.serve.OpenAiServer;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The OpenAI-compatible server over real sockets with the JDK's HTTP client, on a tiny trained
 * model: every route, the errors, authentication, the streaming format, usage and the
 * expert_selection extension, greedy output equal to the generator's among concurrent requests,
 * a client that leaves mid-stream, and draining.
 */
class ServeTest {

    @TempDir
    static Path dir;
    static Path model;
    static InferenceModel loaded;
    static Tokenizer tok;
    static Scheduler scheduler;
    static OpenAiServer server;
    static String base;
    static final HttpClient HTTP = HttpClient.newHttpClient();
    static final ObjectMapper JSON = new ObjectMapper();

    @BeforeAll
    static void start() throws Exception {
        Path data = TrainCommandTest.prepareData(dir);
        model = dir.resolve("model");
        List<String> args = new ArrayList<>(List.of(TrainCommandTest.argsFor(data, "--out", model.toString(), "--steps", "3")));
        args.set(args.indexOf("--max-position-embeddings") + 1, "128"); // room for chat prompts
        PrepareCommandTest.Run r = PrepareCommandTest.run(args.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        loaded = InferenceModel.load(model, MatVec.DType.F32);
        tok = Tokenizer.load(model.resolve(ModelFiles.TOKENIZER), loaded.config().vocabSize());
        scheduler = scheduler(16, 64);
        server = new OpenAiServer(scheduler, tok, new OpenAiServer.Settings("127.0.0.1", 0, "tiny", null, 8,
                ExpertSelection.defaultFor(loaded.config()), "f32"), s -> { });
        base = "http://127.0.0.1:" + server.address().getPort();
    }

    static Scheduler scheduler(int batch, int queue) {
        Engine e = Engine.batched(loaded, Scheduler.engineTokens(batch, Engine.DEFAULT_CHUNK), loaded.config().maxPositions(), 64);
        return new Scheduler(e, batch, queue, Engine.DEFAULT_CHUNK);
    }

    @AfterAll
    static void stop() throws Exception {
        server.close();
        loaded.close();
    }

    static HttpResponse<String> post(String path, String body) throws Exception {
        return post(base, path, body, null);
    }

    static HttpResponse<String> post(String base, String path, String body, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).POST(HttpRequest.BodyPublishers.ofString(body))
                .header("Content-Type", "application/json");
        if (key != null) b.header("Authorization", "Bearer " + key);
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> get(String path) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base + path)).GET().build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode json(HttpResponse<String> r) throws IOException {
        return JSON.readTree(r.body());
    }

    /** The JSON objects of an SSE body, and whether it ended with [DONE]. */
    static List<JsonNode> events(String body) throws IOException {
        List<JsonNode> out = new ArrayList<>();
        String[] parts = body.split("\n\n");
        for (int i = 0; i < parts.length; i++) {
            assertTrue(parts[i].startsWith("data: "), "an SSE event: " + parts[i]);
            String d = parts[i].substring(6);
            if (d.equals("[DONE]")) {
                assertEquals(parts.length - 1, i, "[DONE] is last");
                return out;
            }
            out.add(JSON.readTree(d));
        }
        throw new AssertionError("no data: [DONE] at the end of " + body);
    }

    static void assertError(HttpResponse<String> r, int status, String param, String code) throws IOException {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode e = json(r).get("error");
        assertNotNull(e, r.body());
        assertTrue(e.get("message").isTextual() && !e.get("message").textValue().isEmpty(), r.body());
        assertTrue(e.get("type").isTextual(), r.body());
        assertTrue(e.has("param") && e.has("code"), r.body());
        if (param != null) assertEquals(param, e.get("param").asText(), r.body());
        if (code != null) assertEquals(code, e.get("code").asText(), r.body());
    }

    @Test
    void completionHasOpenAisShapeAndUsage() throws Exception {
        HttpResponse<String> r = post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"class A {\",\"max_tokens\":5,"
                + "\"temperature\":0,\"ignore_eos\":true,\"some_unknown_field\":[1,2]}");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode j = json(r);
        assertEquals("text_completion", j.get("object").asText());
        assertTrue(j.get("id").asText().startsWith("cmpl-"));
        assertEquals("tiny", j.get("model").asText());
        JsonNode c = j.get("choices").get(0);
        assertEquals("length", c.get("finish_reason").asText());
        assertTrue(c.get("text").isTextual());
        JsonNode u = j.get("usage");
        assertEquals(tok.encode("class A {").length, u.get("prompt_tokens").asInt());
        assertEquals(5, u.get("completion_tokens").asInt());
        assertEquals(u.get("prompt_tokens").asInt() + 5, u.get("total_tokens").asInt());
        assertTrue(u.get("active_params_per_token").asLong() > 0 && u.get("active_hidden_percent").asDouble() == 100.0, r.body());

        // echo puts the prompt first; without max_tokens the server's default (8 here) applies
        JsonNode e = json(post("/v1/completions", "{\"prompt\":\"class A {\",\"temperature\":0,\"echo\":true,\"ignore_eos\":true}"));
        assertTrue(e.get("choices").get(0).get("text").asText().startsWith("class A {"), e.toString());
        assertEquals(8, e.get("usage").get("completion_tokens").asInt());
    }

    @Test
    void streamingSendsChunksUsageAndDone() throws Exception {
        HttpResponse<String> r = post("/v1/completions", "{\"prompt\":\"int x\",\"max_tokens\":6,\"temperature\":0,\"stream\":true,"
                + "\"ignore_eos\":true,\"stream_options\":{\"include_usage\":true}}");
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        List<JsonNode> ev = events(r.body());
        JsonNode usage = ev.getLast();
        assertEquals(0, usage.get("choices").size(), "the usage chunk has no choices");
        assertEquals(6, usage.get("usage").get("completion_tokens").asInt());
        JsonNode last = ev.get(ev.size() - 2).get("choices").get(0);
        assertEquals("length", last.get("finish_reason").asText());
        StringBuilder text = new StringBuilder();
        for (JsonNode e : ev.subList(0, ev.size() - 1)) {
            assertEquals("text_completion", e.get("object").asText());
            text.append(e.get("choices").get(0).get("text").asText());
        }
        JsonNode plain = json(post("/v1/completions", "{\"prompt\":\"int x\",\"max_tokens\":6,\"temperature\":0,\"ignore_eos\":true}"));
        assertEquals(plain.get("choices").get(0).get("text").asText(), text.toString(), "the stream's text is the plain reply's");
    }

    @Test
    void chatCompletionsPlainAndStreaming() throws Exception {
        String msgs = "\"messages\":[{\"role\":\"system\",\"content\":\"Java\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"class\"}]}]";
        HttpResponse<String> r = post("/v1/chat/completions", "{" + msgs + ",\"max_tokens\":4,\"temperature\":0}");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode j = json(r);
        assertEquals("chat.completion", j.get("object").asText());
        JsonNode m = j.get("choices").get(0).get("message");
        assertEquals("assistant", m.get("role").asText());
        assertTrue(m.get("content").isTextual());
        HttpResponse<String> s = post("/v1/chat/completions", "{" + msgs + ",\"max_tokens\":4,\"temperature\":0,\"stream\":true}");
        List<JsonNode> ev = events(s.body());
        assertEquals("assistant", ev.getFirst().get("choices").get(0).get("delta").get("role").asText());
        StringBuilder text = new StringBuilder();
        for (JsonNode e : ev) {
            assertEquals("chat.completion.chunk", e.get("object").asText());
            text.append(e.get("choices").get(0).get("delta").path("content").asText(""));
        }
        assertEquals(m.get("content").asText(), text.toString());
        assertFalse(ev.getLast().get("choices").get(0).get("finish_reason").isNull());
    }

    @Test
    void expertSelectionAppliesToTheRequestAlone() throws Exception {
        JsonNode sparse = json(post("/v1/completions", "{\"prompt\":\"class\",\"max_tokens\":3,\"temperature\":0,\"ignore_eos\":true,"
                + "\"expert_selection\":\"top-k:att=1,mlp=1\"}"));
        JsonNode dense = json(post("/v1/completions", "{\"prompt\":\"class\",\"max_tokens\":3,\"temperature\":0,\"ignore_eos\":true}"));
        double s = sparse.get("usage").get("active_hidden_percent").asDouble(), d = dense.get("usage").get("active_hidden_percent").asDouble();
        assertTrue(s < 40 && d == 100, "sparse " + s + "%, dense " + d + "%");
        assertTrue(sparse.get("usage").get("active_params_per_token").asLong() < dense.get("usage").get("active_params_per_token").asLong());
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"expert_selection\":\"top-k:99\"}"), 400, "expert_selection", null);
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"expert_selection\":\"fastest\"}"), 400, "expert_selection", null);
    }

    @Test
    void badRequestsGetOpenAiErrors() throws Exception {
        assertError(post("/v1/completions", "{\"prompt\":"), 400, null, null);
        assertError(post("/v1/completions", "[1,2]"), 400, null, null);
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":\"many\"}"), 400, "max_tokens", null);
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"temperature\":\"hot\"}"), 400, "temperature", null);
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"stream\":1}"), 400, "stream", null);
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"stop\":[1]}"), 400, "stop", null);
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"n\":2}"), 400, "n", null);
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"model\":\"gpt-4\"}"), 400, "model", "model_not_found");
        assertError(post("/v1/completions", "{\"max_tokens\":3}"), 400, "prompt", null);
        assertError(post("/v1/chat/completions", "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}"), 400, "messages", null);
        int ctx = loaded.config().maxPositions();
        assertError(post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":" + ctx + "}"), 400, "max_tokens", "context_length_exceeded");
        assertError(post("/v1/completions", "{\"prompt\":\"" + "class A { int x; } ".repeat(ctx) + "\"}"), 400, "prompt",
                "context_length_exceeded");
        assertError(post("/v1/completions", "{\"prompt\":\"" + "x".repeat(OpenAiServer.MAX_BODY) + "\"}"), 413, null, null);
        assertError(get("/v1/nothing"), 404, null, null);
        assertError(get("/v1/completions"), 405, null, null);
        // and the server still works
        assertEquals(200, post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}").statusCode());
    }

    @Test
    void modelsHealthMetricsTokenize() throws Exception {
        JsonNode models = json(get("/v1/models"));
        assertEquals("tiny", models.get("data").get(0).get("id").asText());
        assertEquals(200, get("/health").statusCode());
        post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":2,\"ignore_eos\":true}");
        String metrics = get("/metrics").body();
        for (String name : new String[] {"dsmoe_requests_running ", "dsmoe_requests_waiting ", "dsmoe_prompt_tokens_total ",
                "dsmoe_generation_tokens_total ", "dsmoe_time_to_first_token_seconds_bucket{le=\"+Inf\"} ",
                "dsmoe_inter_token_latency_seconds_count ", "dsmoe_batch_size_bucket", "dsmoe_kv_blocks_in_use ",
                "dsmoe_active_experts_per_token{layer_type=\"mlp\",layer=\"all\"} "}) {
            assertTrue(metrics.contains(name), name + " in\n" + metrics);
        }
        JsonNode t = json(post("/tokenize", "{\"content\":\"class Foo\"}"));
        assertTrue(t.get("tokens").size() > 0);
        JsonNode d = json(post("/detokenize", "{\"tokens\":" + t.get("tokens") + "}"));
        assertEquals("class Foo", d.get("content").asText());
        assertError(post("/detokenize", "{\"tokens\":[-1]}"), 400, "tokens", null);
    }

    /** 16 concurrent greedy requests: each gets the tokens the generator gives it alone. */
    @Test
    void greedyOutputDoesNotDependOnTheOtherRequests() throws Exception {
        String[] prompts = new String[16];
        String[] rules = {"dense", "top-k:2", "threshold:0.48", "threshold-top-k:0.48"};
        List<CompletableFuture<HttpResponse<String>>> replies = new ArrayList<>();
        for (int i = 0; i < prompts.length; i++) {
            prompts[i] = "class C" + i + " { int v" + "x".repeat(i % 5) + " =";
            String body = "{\"prompt\":\"" + prompts[i] + "\",\"max_tokens\":" + (4 + i % 6) + ",\"temperature\":0,\"ignore_eos\":true,"
                    + "\"expert_selection\":\"" + rules[i % 4] + "\"" + (i % 2 == 0 ? ",\"stream\":true" : "") + "}";
            replies.add(HTTP.sendAsync(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString()));
        }
        for (int i = 0; i < prompts.length; i++) {
            HttpResponse<String> r = replies.get(i).get(60, TimeUnit.SECONDS);
            assertEquals(200, r.statusCode(), r.body());
            String text;
            if (i % 2 == 0) {
                StringBuilder b = new StringBuilder();
                for (JsonNode e : events(r.body())) b.append(e.get("choices").get(0).get("text").asText());
                text = b.toString();
            } else {
                text = json(r).get("choices").get(0).get("text").asText();
            }
            ExpertSelection sel = ExpertSelection.parse(rules[i % 4], loaded.config());
            Generator alone = new Generator(new Engine(loaded, sel), Sampler.greedy(loaded.config().vocabSize(), tok::canDecode));
            int[] ids = alone.generate(tok.encode(prompts[i]), 4 + i % 6, -1, null).tokens();
            assertEquals(tok.decode(ids), text, "request " + i + " (" + rules[i % 4] + ")");
        }
    }

    /** A client that closes its stream: its sequence and KV blocks are freed, the others unaffected. */
    @Test
    void aClientLeavingMidStreamFreesItsSequence() throws Exception {
        Scheduler s = scheduler(4, 8);
        try (OpenAiServer own = new OpenAiServer(s, tok, new OpenAiServer.Settings("127.0.0.1", 0, "tiny", null, 8,
                ExpertSelection.dense(), "f32"), x -> { })) {
            String b = "http://127.0.0.1:" + own.address().getPort();
            HttpResponse<InputStream> r = HTTP.send(HttpRequest.newBuilder(URI.create(b + "/v1/completions")).POST(
                    HttpRequest.BodyPublishers.ofString("{\"prompt\":\"class\",\"max_tokens\":25,\"ignore_eos\":true,\"stream\":true}")).build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            try (BufferedReader in = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
                assertTrue(in.readLine().startsWith("data: "));
            }
            long deadline = System.nanoTime() + 20_000_000_000L;
            while ((s.running() > 0 || s.engine().cache().blocksInUse() > 0) && System.nanoTime() < deadline) Thread.sleep(20);
            assertEquals(0, s.running(), "the request left the batch");
            assertEquals(0, s.engine().cache().blocksInUse(), "its KV blocks were freed");
            assertEquals(200, post(b, "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":2}", null).statusCode());
        }
    }

    @Test
    void anApiKeyGuardsEveryRouteButHealth() throws Exception {
        try (OpenAiServer own = new OpenAiServer(scheduler(2, 4), tok, new OpenAiServer.Settings("127.0.0.1", 0, "tiny", "s3cret", 8,
                ExpertSelection.dense(), "f32"), x -> { })) {
            String b = "http://127.0.0.1:" + own.address().getPort();
            assertError(post(b, "/v1/completions", "{\"prompt\":\"x\"}", null), 401, null, "invalid_api_key");
            assertError(post(b, "/v1/completions", "{\"prompt\":\"x\"}", "wrong"), 401, null, "invalid_api_key");
            assertEquals(200, post(b, "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}", "s3cret").statusCode());
            assertEquals(200, HTTP.send(HttpRequest.newBuilder(URI.create(b + "/health")).build(), HttpResponse.BodyHandlers.ofString())
                    .statusCode());
            assertEquals(401, HTTP.send(HttpRequest.newBuilder(URI.create(b + "/v1/models")).build(), HttpResponse.BodyHandlers.ofString())
                    .statusCode());
        }
    }

    /** A full queue answers 429 with Retry-After and leaves the admitted requests alone. */
    @Test
    void aFullQueueRefusesWithRetryAfter() throws Exception {
        try (OpenAiServer own = new OpenAiServer(scheduler(1, 1), tok, new OpenAiServer.Settings("127.0.0.1", 0, "tiny", null, 8,
                ExpertSelection.dense(), "f32"), x -> { })) {
            String b = "http://127.0.0.1:" + own.address().getPort();
            List<CompletableFuture<HttpResponse<String>>> all = new ArrayList<>();
            for (int i = 0; i < 24; i++) {
                all.add(HTTP.sendAsync(HttpRequest.newBuilder(URI.create(b + "/v1/completions")).POST(HttpRequest.BodyPublishers.ofString(
                        "{\"prompt\":\"class\",\"max_tokens\":100,\"ignore_eos\":true}")).build(), HttpResponse.BodyHandlers.ofString()));
            }
            int refused = 0;
            for (var f : all) {
                HttpResponse<String> r = f.get(60, TimeUnit.SECONDS);
                if (r.statusCode() == 429) {
                    assertError(r, 429, null, "queue_full");
                    assertTrue(r.headers().firstValue("Retry-After").isPresent());
                    refused++;
                } else {
                    assertEquals(200, r.statusCode(), r.body());
                    assertEquals(100, json(r).get("usage").get("completion_tokens").asInt());
                }
            }
            assertTrue(refused > 0 && refused < all.size(), refused + " of " + all.size() + " refused with one running and one queued");
        }
    }

    /** Draining finishes what was admitted and refuses new requests with 503 meanwhile. */
    @Test
    void drainingFinishesWhatRuns() throws Exception {
        Scheduler s = scheduler(2, 4);
        OpenAiServer own = new OpenAiServer(s, tok, new OpenAiServer.Settings("127.0.0.1", 0, "tiny", null, 8,
                ExpertSelection.dense(), "f32"), x -> { });
        String b = "http://127.0.0.1:" + own.address().getPort();
        List<CompletableFuture<HttpResponse<String>>> admitted = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            admitted.add(HTTP.sendAsync(HttpRequest.newBuilder(URI.create(b + "/v1/completions")).POST(HttpRequest.BodyPublishers.ofString(
                    "{\"prompt\":\"class\",\"max_tokens\":100,\"ignore_eos\":true,\"stream\":" + (i == 0) + "}")).build(),
                    HttpResponse.BodyHandlers.ofString()));
        }
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (s.running() + s.waiting() + s.metrics().finished(Scheduler.Finish.LENGTH) < 3 && System.nanoTime() < deadline) {
            Thread.sleep(1); // all three submitted
        }
        Thread drain = Thread.ofVirtual().start(() -> {
            try {
                own.drain(30_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        while (s.running() + s.waiting() > 0 && !s.stopped()) {
            HttpResponse<String> health;
            try {
                health = HTTP.send(HttpRequest.newBuilder(URI.create(b + "/health")).build(), HttpResponse.BodyHandlers.ofString());
            } catch (IOException e) {
                break; // closed already
            }
            if (health.statusCode() == 503) {
                HttpResponse<String> refused;
                try {
                    refused = post(b, "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}", null);
                } catch (IOException e) {
                    // the drain ended between the health check and this request (the three are
                    // short): the server is gone, which is the other right answer
                    drain.join(30_000);
                    assertTrue(s.stopped(), "no answer while the server still ran: " + e);
                    break;
                }
                assertError(refused, 503, null, "server_shutting_down");
                break;
            }
        }
        for (var f : admitted) {
            HttpResponse<String> done = f.get(30, TimeUnit.SECONDS);
            assertEquals(200, done.statusCode(), done.body());
        }
        drain.join();
        assertTrue(s.stopped());
        assertEquals(0, s.engine().cache().blocksInUse());
    }

    /** The command: one ready line, a request over the socket, SIGTERM, then a clean exit 0 after the drain. */
    @Test
    void theServeCommandStartsAnswersAndStopsCleanlyOnSigterm() throws Exception {
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(javaBin, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), Main.class.getName(), "serve", "--model", model.toString(), "--port", "0",
                "--model-id", "m1", "--max-batch", "4", "--strategy", "top-k:2", "--drain-seconds", "20"));
        Process p = new ProcessBuilder(cmd).redirectError(dir.resolve("serve.err").toFile()).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            String ready = out.readLine();
            assertNotNull(ready, "no ready line; stderr: " + java.nio.file.Files.readString(dir.resolve("serve.err")));
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("ready on http://127\\.0\\.0\\.1:(\\d+), model m1 \\(f32 weights.*"
                    + "strategy top-k:2.*max batch 4.*").matcher(ready);
            assertTrue(m.find(), ready);
            String b = "http://127.0.0.1:" + m.group(1);
            HttpResponse<String> r = post(b, "/v1/completions", "{\"model\":\"m1\",\"prompt\":\"class\",\"max_tokens\":3,\"ignore_eos\":true}", null);
            assertEquals(200, r.statusCode(), r.body());
            p.destroy(); // SIGTERM
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the server stops");
            assertEquals(0, p.exitValue(), java.nio.file.Files.readString(dir.resolve("serve.err")));
            String err = java.nio.file.Files.readString(dir.resolve("serve.err"));
            assertTrue(err.contains("dsmoe serve: cmpl-1 prompt ") && err.contains("completion 3 tokens"), err);
            assertTrue(err.contains("draining") && err.contains("stopped"), err);
        } finally {
            p.destroyForcibly();
        }
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("serve", "--model", dir.resolve("none").toString()), "no such model directory");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("serve", "--model", model.toString(), "--ctx", "100000"), "--ctx");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("serve", "--model", model.toString(), "--port", "0", "--strategy", "top-k:99"),
                "--strategy");
        try (java.net.ServerSocket taken = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            TrainCommandTest.assertOneLineError(PrepareCommandTest.run("serve", "--model", model.toString(), "--port",
                    Integer.toString(taken.getLocalPort())), "choose another --port");
        }
    }

    /**
     * A bounded load: 200 requests at concurrency 32, streaming and not, every tenth client leaving
     * mid-stream. Every other request completes with the tokens it asked for; the server ends with
     * no sequence and no KV block in use; the heap after the run is within 10% of the heap after a
     * warm-up run of the same requests.
     */
    @Test
    void underLoadEveryStayingClientGetsItsTokensAndNothingLeaks() throws Exception {
        Scheduler s = scheduler(32, 256);
        try (OpenAiServer own = new OpenAiServer(s, tok, new OpenAiServer.Settings("127.0.0.1", 0, "tiny", null, 8,
                ExpertSelection.dense(), "f32"), x -> { })) {
            String b = "http://127.0.0.1:" + own.address().getPort();
            load(b, s);
            long warm = settledHeap();
            load(b, s);
            long after = settledHeap();
            assertTrue(Math.abs(after - warm) <= 0.1 * warm, "heap after warm-up " + warm / 1024 + " KiB, after the run " + after / 1024 + " KiB");
        }
    }

    private static void load(String b, Scheduler s) throws Exception {
        int n = 200, tokens = 12;
        java.util.concurrent.Semaphore slots = new java.util.concurrent.Semaphore(32);
        List<java.util.concurrent.Future<String>> results = new ArrayList<>();
        try (var pool = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < n; i++) {
                int k = i;
                results.add(pool.submit(() -> {
                    slots.acquire();
                    try {
                        boolean stream = k % 2 == 0, leave = k % 10 == 0;
                        String body = "{\"prompt\":\"class L" + k + " {\",\"max_tokens\":" + tokens + ",\"ignore_eos\":true,\"seed\":" + k
                                + (stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "") + "}";
                        HttpRequest req = HttpRequest.newBuilder(URI.create(b + "/v1/completions"))
                                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
                        if (leave) {
                            HttpResponse<InputStream> r = HTTP.send(req, HttpResponse.BodyHandlers.ofInputStream());
                            try (BufferedReader in = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
                                in.readLine();
                            }
                            return "left";
                        }
                        HttpResponse<String> r = HTTP.send(req, HttpResponse.BodyHandlers.ofString());
                        if (r.statusCode() != 200) return "status " + r.statusCode() + ": " + r.body();
                        JsonNode usage = stream ? events(r.body()).getLast().get("usage") : json(r).get("usage");
                        int got = usage.get("completion_tokens").asInt();
                        return got == tokens ? "ok" : "got " + got + " tokens";
                    } finally {
                        slots.release();
                    }
                }));
            }
        }
        int ok = 0;
        for (var f : results) {
            String r = f.get();
            if (r.equals("ok")) ok++;
            else assertEquals("left", r);
        }
        assertEquals(n - n / 10, ok, "every client that stayed got its tokens");
        long deadline = System.nanoTime() + 30_000_000_000L;
        while ((s.running() > 0 || s.waiting() > 0 || s.engine().cache().blocksInUse() > 0) && System.nanoTime() < deadline) Thread.sleep(10);
        assertEquals(0, s.running());
        assertEquals(0, s.waiting());
        assertEquals(0, s.engine().cache().blocksInUse(), "no KV block stays in use");
    }

    private static long settledHeap() throws InterruptedException {
        var mx = java.lang.management.ManagementFactory.getMemoryMXBean();
        long least = Long.MAX_VALUE;
        for (int i = 0; i < 4; i++) {
            System.gc();
            Thread.sleep(100);
            least = Math.min(least, mx.getHeapMemoryUsage().getUsed());
        }
        return least;
    }
}
