package dev.dsmoe.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.KvCache;
import dev.dsmoe.infer.Scheduler;
import dev.dsmoe.serve.OpenAiServer;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Consumer;

/**
 * Serving throughput: the OpenAI server in this process (loopback), C clients each streaming
 * requests back to back (prompt of P random tokens, N new tokens with {@code ignore_eos}), for
 * each concurrency C. Reports aggregate output tokens/s over the run's wall time and the p50/p99
 * of time to first token and of inter-token latency seen by the clients (between chunks that
 * carry text: a token that ends inside a UTF-8 character is sent with the next, by both servers).
 * {@link #runLlamaServer} drives llama.cpp's server with the same client.
 */
public final class ServeBenchmarks {

    /** One (model, concurrency) measurement. */
    public record Row(String model, String selection, String dtype, int concurrency, int requests, int promptTokens,
                      int newTokens, double outputTokensPerSecond, double ttftP50, double ttftP99, double itlP50, double itlP99,
                      double ratioToFirst) {}

    private static final ObjectMapper JSON = new ObjectMapper();
    /** Requests sent again after the connection closed before a response (reported by {@link #retries()}). */
    private static final java.util.concurrent.atomic.AtomicInteger RETRIES = new java.util.concurrent.atomic.AtomicInteger();

    /** Requests this process has sent again because the server closed the connection before answering. */
    public static int retries() {
        return RETRIES.get();
    }
    private final int prompt, newTokens, requestsPerClient;
    private final Consumer<String> progress;

    public ServeBenchmarks(int prompt, int newTokens, int requestsPerClient, Consumer<String> progress) {
        if (prompt < 1 || newTokens < 1 || requestsPerClient < 1) throw new IllegalArgumentException("need prompt, tokens, requests >= 1");
        this.prompt = prompt;
        this.newTokens = newTokens;
        this.requestsPerClient = requestsPerClient;
        this.progress = progress;
    }

    /** Runs every concurrency on one model; {@code tok} may be null (prompts are sent as token ids). */
    public List<Row> run(String name, InferenceModel model, Tokenizer tok, ExpertSelection selection, List<Integer> concurrency)
            throws IOException, InterruptedException {
        int most = Collections.max(concurrency), ctx = Math.min(model.config().maxPositions(), prompt + newTokens);
        if (prompt + newTokens > model.config().maxPositions()) {
            throw new IllegalArgumentException("prompt (" + prompt + ") + tokens (" + newTokens + ") exceed the context of "
                    + model.config().maxPositions());
        }
        int blocks = most * ((ctx + KvCache.DEFAULT_BLOCK - 1) / KvCache.DEFAULT_BLOCK + 1);
        Engine engine = Engine.batched(model, Scheduler.engineTokens(most, Engine.DEFAULT_CHUNK), ctx, blocks);
        Scheduler scheduler = new Scheduler(engine, most, 4 * most, Engine.DEFAULT_CHUNK);
        List<Row> rows = new ArrayList<>();
        Tokenizer t = tok == null ? Tokenizer.fromJson(bytesTokenizer(), "bench") : tok;
        int vocab = 0;
        while (vocab < model.config().vocabSize() && t.canDecode(vocab)) vocab++; // prompt ids the tokenizer knows
        try (OpenAiServer server = new OpenAiServer(scheduler, t,
                new OpenAiServer.Settings("127.0.0.1", 0, name, null, newTokens, selection, model.dtype().name()), s -> { })) {
            String url = "http://127.0.0.1:" + server.address().getPort() + "/v1/completions";
            HttpClient http = HttpClient.newBuilder().executor(Executors.newVirtualThreadPerTaskExecutor()).build();
            SplittableRandom r = new SplittableRandom(5);
            // warm-up: a few clients at once, so the JIT has compiled the batched step before C = 1 is timed
            measure(http, url, Math.min(4, most), 1, r, vocab);
            double first = Double.NaN;
            for (int c : concurrency) {
                progress.accept(name + ": concurrency " + c);
                Row row = measure(http, url, c, requestsPerClient, r, vocab);
                if (Double.isNaN(first)) first = row.outputTokensPerSecond();
                rows.add(new Row(name, selection.toString(), model.dtype().name().toLowerCase(Locale.ROOT), c, row.requests(), prompt,
                        newTokens, row.outputTokensPerSecond(), row.ttftP50(), row.ttftP99(), row.itlP50(), row.itlP99(), Double.NaN));
            }
        }
        return rows;
    }

    /**
     * The same measurement against llama.cpp's {@code llama-server} on {@code gguf}, restarted for
     * each concurrency C with C slots (its slots are fixed at start): prompts of the same length
     * (token ids 1..256, the byte tokens of the peer's GGUF), the same client, greedy, {@code ignore_eos}.
     */
    public void runLlamaServer(String name, java.nio.file.Path binary, java.nio.file.Path gguf, int threads,
                               List<Integer> concurrency, Consumer<Row> sink) throws IOException, InterruptedException {
        SplittableRandom r = new SplittableRandom(5);
        for (int c : concurrency) {
            progress.accept(name + ": starting llama-server with " + c + " slots");
            // a client per server: a pooled keep-alive connection to an earlier server that got the
            // same port would be reused and fail ("header parser received no bytes")
            try (LlamaServerPeer peer = LlamaServerPeer.start(binary, gguf, threads, c, prompt + newTokens + 16);
                 HttpClient http = HttpClient.newBuilder().executor(Executors.newVirtualThreadPerTaskExecutor()).build()) {
                String url = peer.baseUrl() + "/v1/completions";
                measure(http, url, Math.min(4, c), 1, r, 257); // warm-up, as for ours
                progress.accept(name + ": concurrency " + c);
                Row row = measure(http, url, c, requestsPerClient, r, 257);
                sink.accept(new Row(name, "dense", "gguf", c, row.requests(), prompt, newTokens, row.outputTokensPerSecond(),
                        row.ttftP50(), row.ttftP99(), row.itlP50(), row.itlP99(), Double.NaN));
            }
        }
    }

    private Row measure(HttpClient http, String url, int clients, int each, SplittableRandom r, int vocab) throws InterruptedException {
        List<Double> ttft = Collections.synchronizedList(new ArrayList<>()), itl = Collections.synchronizedList(new ArrayList<>());
        long[] tokens = new long[1];
        List<String> bodies = new ArrayList<>();
        for (int i = 0; i < clients * each; i++) {
            StringBuilder b = new StringBuilder("{\"prompt\":[");
            for (int t = 0; t < prompt; t++) b.append(t > 0 ? "," : "").append(1 + r.nextInt(vocab - 1));
            b.append("],\"max_tokens\":").append(newTokens).append(",\"ignore_eos\":true,\"temperature\":0,\"stream\":true,")
                    .append("\"stream_options\":{\"include_usage\":true}}");
            bodies.add(b.toString());
        }
        long t0 = System.nanoTime();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> fs = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                int k = c;
                fs.add(pool.submit(() -> {
                    for (int i = 0; i < each; i++) {
                        long n = stream(http, url, bodies.get(k * each + i), ttft, itl);
                        synchronized (tokens) {
                            tokens[0] += n;
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : fs) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    throw new IllegalStateException("a benchmark request failed: " + e.getCause().getMessage(), e.getCause());
                }
            }
        }
        double sec = (System.nanoTime() - t0) / 1e9;
        return new Row("", "", "", clients, clients * each, prompt, newTokens, tokens[0] / sec, pct(ttft, 50), pct(ttft, 99),
                pct(itl, 50), pct(itl, 99), Double.NaN);
    }

    /** One streamed request: the completion tokens its usage reports; its latencies go into the lists. */
    private static long stream(HttpClient http, String url, String body, List<Double> ttft, List<Double> itl)
            throws IOException, InterruptedException {
        long start = System.nanoTime(), last = 0;
        HttpRequest req = HttpRequest.newBuilder(URI.create(url)).POST(HttpRequest.BodyPublishers.ofString(body)).build();
        HttpResponse<java.io.InputStream> resp;
        for (int attempt = 1; ; attempt++) {
            // A connection the server closes before answering (llama-server did, for a few of 64
            // connections opened at once) is retried, as OpenAI's clients retry connection errors;
            // the time to first token counts from the first attempt.
            try {
                resp = http.send(req, HttpResponse.BodyHandlers.ofInputStream());
                break;
            } catch (IOException e) {
                if (attempt == 3) throw e;
                RETRIES.incrementAndGet();
                Thread.sleep(100L * attempt);
            }
        }
        if (resp.statusCode() != 200) throw new IOException("HTTP " + resp.statusCode() + ": " + new String(resp.body().readAllBytes()));
        long completion = 0;
        try (BufferedReader in = new BufferedReader(new InputStreamReader(resp.body(), StandardCharsets.UTF_8))) {
            for (String line; (line = in.readLine()) != null; ) {
                if (!line.startsWith("data: ") || line.equals("data: [DONE]")) continue;
                JsonNode n = JSON.readTree(line.substring(6));
                if (n.path("usage").isObject()) completion = n.get("usage").get("completion_tokens").asLong();
                if (n.path("choices").size() == 0 || n.get("choices").get(0).path("text").asText().isEmpty()) continue;
                long now = System.nanoTime();
                if (last == 0) ttft.add((now - start) / 1e9);
                else itl.add((now - last) / 1e9);
                last = now;
            }
        }
        return completion;
    }

    private static double pct(List<Double> xs, int p) {
        if (xs.isEmpty()) return Double.NaN;
        double[] a = xs.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(a);
        return a[Math.min(a.length - 1, (int) Math.ceil(p / 100.0 * a.length) - 1)];
    }

    /** A tokenizer of the 256 bytes and an end token, for models without one (random-weight presets). */
    private static String bytesTokenizer() {
        return dev.dsmoe.tokenizer.BpeTrainer.train(List.of("a"), 257, null).toJson();
    }
}
