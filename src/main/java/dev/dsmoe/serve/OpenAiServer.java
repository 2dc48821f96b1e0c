package dev.dsmoe.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceStats;
import dev.dsmoe.infer.Sampler;
import dev.dsmoe.infer.Scheduler;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Consumer;

/**
 * The OpenAI-compatible HTTP API over a {@link Scheduler}: {@code /v1/completions} and
 * {@code /v1/chat/completions} (streaming as server-sent events or not), {@code /v1/models},
 * {@code /health}, {@code /metrics} (Prometheus text), and llama-server's {@code /tokenize} and
 * {@code /detokenize}. It parses, validates and streams; the scheduler batches and the engine
 * computes. Built on the JDK's own HTTP server with a virtual thread per exchange (no dependency,
 * and a blocked stream costs no platform thread); JSON through Jackson.
 *
 * <p>Errors are OpenAI's {@code {"error": {"message", "type", "param", "code"}}}: 400 for a
 * malformed or invalid request (a known field of the wrong type, an unknown model, a bad
 * {@code expert_selection}, code {@code context_length_exceeded} for a prompt plus
 * {@code max_tokens} past the context), 401 without the API key, 404/405 for an unknown route,
 * 413 for a body over {@link #MAX_BODY} bytes, 429 with {@code Retry-After} when the queue is full,
 * 503 while draining. None of them touches the requests already running.
 */
public final class OpenAiServer implements AutoCloseable {

    /** The largest request body read. */
    public static final int MAX_BODY = 1 << 20;

    /**
     * @param modelId          the id clients name the model by
     * @param apiKey           required as {@code Authorization: Bearer KEY} on every route but /health; null: none
     * @param maxTokensDefault the token limit of a request without {@code max_tokens} (also capped by the context)
     * @param selection        the expert selection of a request without {@code expert_selection}
     * @param weights          the weight type, for /v1/models and the log
     */
    public record Settings(String host, int port, String modelId, String apiKey, int maxTokensDefault,
                           ExpertSelection selection, String weights) {}

    private enum State { READY, DRAINING }

    private static final ObjectMapper JSON = new ObjectMapper();
    /** The plain chat template's pieces (documented in the README). */
    static final String CHAT_TURN = "### %s\n%s\n\n", CHAT_REPLY = "### Assistant\n", CHAT_STOP = "\n### ";

    private final Scheduler scheduler;
    private final Tokenizer tok;
    private final Settings s;
    private final ModelConfig c;
    private final Consumer<String> log;
    private final HttpServer http;
    private final long created = System.currentTimeMillis() / 1000;
    private volatile State state = State.READY;

    public OpenAiServer(Scheduler scheduler, Tokenizer tok, Settings settings, Consumer<String> log) throws IOException {
        this.scheduler = scheduler;
        this.tok = tok;
        this.s = settings;
        this.c = scheduler.engine().config();
        this.log = log;
        http = HttpServer.create(new InetSocketAddress(settings.host(), settings.port()), 128);
        http.setExecutor(Executors.newVirtualThreadPerTaskExecutor());
        http.createContext("/", this::handle);
        http.start();
    }

    /** The bound address (the port is the real one when 0 was asked for). */
    public InetSocketAddress address() {
        return http.getAddress();
    }

    /**
     * Stops taking requests (503), lets those queued and running finish for up to
     * {@code drainMillis} (then ends the rest), and closes the listener.
     */
    public void drain(long drainMillis) throws InterruptedException {
        state = State.DRAINING;
        scheduler.shutdown(drainMillis);
        http.stop(1);
    }

    @Override
    public void close() throws InterruptedException {
        drain(0);
    }

    // ------------------------------------------------------------------ routing

    private void handle(HttpExchange ex) {
        try (ex) {
            String path = ex.getRequestURI().getPath(), method = ex.getRequestMethod();
            try {
                if (path.equals("/health")) {
                    expect(method, "GET");
                    boolean ok = state == State.READY;
                    send(ex, ok ? 200 : 503, JSON.createObjectNode().put("status", ok ? "ok" : "draining"));
                    return;
                }
                authorize(ex);
                switch (path) {
                    case "/v1/models" -> {
                        expect(method, "GET");
                        ObjectNode list = JSON.createObjectNode().put("object", "list");
                        list.putArray("data").addObject().put("id", s.modelId()).put("object", "model").put("created", created)
                                .put("owned_by", "dsmoe4j");
                        send(ex, 200, list);
                    }
                    case "/metrics" -> {
                        expect(method, "GET");
                        byte[] b = PrometheusText.of(scheduler).getBytes(StandardCharsets.UTF_8);
                        ex.getResponseHeaders().set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
                        ex.sendResponseHeaders(200, b.length);
                        ex.getResponseBody().write(b);
                    }
                    case "/tokenize" -> {
                        expect(method, "POST");
                        ObjectNode body = body(ex);
                        String content = GenerationParams.text(body, "content");
                        if (content == null) throw ApiException.invalid("content", "content (a string) is required");
                        ObjectNode r = JSON.createObjectNode();
                        ArrayNode a = r.putArray("tokens");
                        for (int t : tok.encode(content)) a.add(t);
                        send(ex, 200, r);
                    }
                    case "/detokenize" -> {
                        expect(method, "POST");
                        int[] ids = tokenIds(body(ex), "tokens");
                        send(ex, 200, JSON.createObjectNode().put("content", tok.decode(ids)));
                    }
                    case "/v1/completions" -> {
                        expect(method, "POST");
                        complete(ex, body(ex), false);
                    }
                    case "/v1/chat/completions" -> {
                        expect(method, "POST");
                        complete(ex, body(ex), true);
                    }
                    default -> throw new ApiException(404, "invalid_request_error", null, "not_found", "no route " + path
                            + "; the routes are /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics, /tokenize, /detokenize");
                }
            } catch (ApiException e) {
                sendError(ex, e);
            }
        } catch (IOException e) {
            // the client went away; nothing to answer
        } catch (RuntimeException e) {
            log.accept("dsmoe serve: internal error on " + ex.getRequestURI() + ": " + e);
        }
    }

    private static void expect(String method, String want) throws ApiException {
        if (!method.equals(want)) {
            throw new ApiException(405, "invalid_request_error", null, "method_not_allowed", "use " + want + ", not " + method);
        }
    }

    private void authorize(HttpExchange ex) throws ApiException {
        if (s.apiKey() == null) return;
        String h = ex.getRequestHeaders().getFirst("Authorization");
        byte[] given = h != null && h.startsWith("Bearer ") ? h.substring(7).trim().getBytes(StandardCharsets.UTF_8) : new byte[0];
        if (!MessageDigest.isEqual(given, s.apiKey().getBytes(StandardCharsets.UTF_8))) { // constant time
            throw new ApiException(401, "invalid_request_error", null, "invalid_api_key",
                    "missing or wrong API key: send the header 'Authorization: Bearer KEY'");
        }
    }

    private static ObjectNode body(HttpExchange ex) throws IOException, ApiException {
        String len = ex.getRequestHeaders().getFirst("Content-Length");
        if (len != null) {
            try {
                Long.parseLong(len.trim());
            } catch (NumberFormatException e) {
                throw ApiException.invalid(null, "bad Content-Length header");
            }
        }
        byte[] b;
        try (InputStream in = ex.getRequestBody()) {
            b = in.readNBytes(MAX_BODY + 1);
            if (b.length > MAX_BODY) {
                // Read on (up to a bound) before answering, so the client, still sending, sees the 413 and not a reset.
                byte[] sink = new byte[1 << 16];
                for (long left = DRAIN_LIMIT; left > 0; ) {
                    int n = in.read(sink, 0, (int) Math.min(sink.length, left));
                    if (n < 0) break;
                    left -= n;
                }
                throw tooLarge();
            }
        }
        JsonNode n;
        try {
            n = JSON.readTree(b);
        } catch (JsonProcessingException e) {
            throw ApiException.invalid(null, "the body is not valid JSON: " + e.getOriginalMessage());
        }
        if (n == null || !n.isObject()) throw ApiException.invalid(null, "the body must be a JSON object");
        return (ObjectNode) n;
    }

    /** Bytes past the limit read and dropped before a 413 (more, and the connection is closed under the client). */
    private static final long DRAIN_LIMIT = 16L << 20;

    private static ApiException tooLarge() {
        return new ApiException(413, "invalid_request_error", null, "request_too_large", "the body is over " + MAX_BODY + " bytes");
    }

    private int[] tokenIds(ObjectNode body, String field) throws ApiException {
        JsonNode v = GenerationParams.present(body, field);
        if (v == null || !v.isArray()) throw ApiException.invalid(field, field + " (an array of token ids) is required");
        int[] ids = new int[v.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode e = v.get(i);
            if (!e.isIntegralNumber() || !e.canConvertToInt() || !tok.canDecode(e.intValue())) {
                throw ApiException.invalid(field, field + "[" + i + "] is not a token id of this model's tokenizer");
            }
            ids[i] = e.intValue();
        }
        return ids;
    }

    // ------------------------------------------------------------------ completions

    /** A request's events, from the scheduler's thread to the exchange's. */
    private record Done(Scheduler.Finish finish, Scheduler.Summary summary) {}

    private void complete(HttpExchange ex, ObjectNode body, boolean chat) throws IOException, ApiException {
        if (state != State.READY) throw new ApiException(503, "server_error", null, "server_shutting_down", "the server is shutting down");
        GenerationParams p = GenerationParams.parse(body, chat);
        if (p.model() != null && !p.model().equals(s.modelId())) {
            throw ApiException.invalid("model", "model_not_found", "no model '" + p.model() + "': this server serves '" + s.modelId() + "'");
        }
        String promptText = chat ? chatPrompt(body) : null;
        int[] prompt = chat ? tok.encode(promptText) : completionPrompt(body);
        if (!chat) promptText = tok.decode(prompt);
        if (prompt.length == 0) throw ApiException.invalid(chat ? "messages" : "prompt", "the prompt is empty");
        int ctx = scheduler.engine().contextLength();
        if (prompt.length >= ctx) {
            throw ApiException.invalid(chat ? "messages" : "prompt", "context_length_exceeded", "the prompt is " + prompt.length
                    + " tokens; the context is " + ctx + " tokens, so no token can follow it: shorten the prompt");
        }
        int maxTokens = p.maxTokens() != null ? p.maxTokens() : Math.min(s.maxTokensDefault(), ctx - prompt.length);
        if ((long) prompt.length + maxTokens > ctx) {
            throw ApiException.invalid("max_tokens", "context_length_exceeded", "the prompt (" + prompt.length + " tokens) and max_tokens ("
                    + maxTokens + ") exceed the context of " + ctx + " tokens: lower max_tokens or shorten the prompt");
        }
        ExpertSelection sel = s.selection();
        if (p.expertSelection() != null) {
            try {
                sel = ExpertSelection.parse(p.expertSelection(), c);
            } catch (IllegalArgumentException e) {
                throw ApiException.invalid("expert_selection", e.getMessage());
            }
        }
        long seed = p.seed() != null ? p.seed() : ThreadLocalRandom.current().nextLong();
        Sampler sampler = p.temperature() == 0 ? Sampler.greedy(c.vocabSize(), tok::canDecode)
                : new Sampler(c.vocabSize(), p.temperature(), p.topK(), p.topP(), seed, tok::canDecode);
        List<String> stops = new ArrayList<>(p.stop());
        if (chat) stops.add(CHAT_STOP);
        LinkedBlockingQueue<Object> events = new LinkedBlockingQueue<>();
        Scheduler.Request r;
        try {
            r = scheduler.submit(prompt, maxTokens, sampler, sel, p.ignoreEos() ? -1 : tok.endOfTextId(), new Scheduler.Listener() {
                @Override
                public void token(int token) {
                    events.add(token);
                }

                @Override
                public void done(Scheduler.Finish finish, Scheduler.Summary summary) {
                    events.add(new Done(finish, summary));
                }
            });
        } catch (Scheduler.Refused e) {
            if (e.shuttingDown) throw new ApiException(503, "server_error", null, "server_shutting_down", e.getMessage());
            ex.getResponseHeaders().set("Retry-After", "1");
            throw new ApiException(429, "rate_limit_exceeded", null, "queue_full", e.getMessage() + "; retry later");
        }
        String id = (chat ? "chatcmpl-" : "cmpl-") + r.id();
        Reply reply = new Reply(ex, id, chat, p);
        StopText text = new StopText(tok, stops);
        boolean stoppedByText = false;
        Done done = null;
        try {
            if (p.stream()) reply.begin(p.echo() ? promptText : "");
            while (true) {
                Object e;
                try {
                    e = events.take();
                } catch (InterruptedException ie) {
                    r.cancel();
                    Thread.currentThread().interrupt();
                    return;
                }
                if (e instanceof Done d) {
                    done = d;
                    break;
                }
                if (stoppedByText) continue;
                String piece = text.add((Integer) e);
                if (text.stopped()) {
                    stoppedByText = true;
                    r.cancel();
                }
                reply.piece(piece);
            }
            reply.piece(text.finish());
            if (done.finish() == Scheduler.Finish.SHUTDOWN) {
                reply.fail(new ApiException(503, "server_error", null, "server_shutting_down",
                        "the server shut down before the request completed"));
                return;
            }
            String finish = stoppedByText || done.finish() == Scheduler.Finish.STOP ? "stop" : "length";
            reply.end(p.echo() ? promptText : "", finish, usage(done.summary()));
        } catch (IOException e) {
            r.cancel(); // the client is gone: free its sequence at the next step
            throw e;
        } finally {
            logRequest(id, done != null ? done : done(events), stoppedByText);
        }
    }

    /** The Done event if it came after the exchange stopped reading (a client gone mid-stream ends a step later). */
    private static Done done(LinkedBlockingQueue<Object> events) {
        for (Object o : events) if (o instanceof Done d) return d;
        return null;
    }

    private int[] completionPrompt(ObjectNode body) throws ApiException {
        JsonNode v = GenerationParams.present(body, "prompt");
        if (v == null) throw ApiException.invalid("prompt", "prompt is required");
        if (v.isTextual()) return tok.encode(v.textValue());
        if (v.isArray()) {
            if (v.size() == 1 && (v.get(0).isTextual() || v.get(0).isArray())) {
                ObjectNode one = JSON.createObjectNode();
                one.set("prompt", v.get(0));
                return completionPrompt(one);
            }
            if (v.size() > 0 && v.get(0).isTextual()) throw ApiException.invalid("prompt", "one prompt per request, got " + v.size());
            return tokenIds(body, "prompt");
        }
        throw ApiException.invalid("prompt", "prompt must be a string, an array of token ids, or an array of one of them");
    }

    /** The plain template: each message as "### Role\ncontent\n\n", then "### Assistant\n". */
    private static String chatPrompt(ObjectNode body) throws ApiException {
        JsonNode v = GenerationParams.present(body, "messages");
        if (v == null || !v.isArray() || v.isEmpty()) throw ApiException.invalid("messages", "messages (a non-empty array) is required");
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < v.size(); i++) {
            JsonNode m = v.get(i);
            if (!m.isObject() || !m.path("role").isTextual()) {
                throw ApiException.invalid("messages", "messages[" + i + "] must be an object with a string role");
            }
            String role = m.get("role").textValue();
            if (!List.of("system", "developer", "user", "assistant", "tool").contains(role)) {
                throw ApiException.invalid("messages", "messages[" + i + "].role '" + role + "' is not system, developer, user, assistant or tool");
            }
            JsonNode content = m.get("content");
            StringBuilder t = new StringBuilder();
            if (content == null || content.isNull()) {
                // an assistant turn with tool calls only: no text
            } else if (content.isTextual()) {
                t.append(content.textValue());
            } else if (content.isArray()) {
                for (JsonNode part : content) {
                    if (!part.isObject() || !"text".equals(part.path("type").asText()) || !part.path("text").isTextual()) {
                        throw ApiException.invalid("messages", "messages[" + i + "].content parts must be {\"type\": \"text\", \"text\": ...}");
                    }
                    t.append(part.get("text").textValue());
                }
            } else {
                throw ApiException.invalid("messages", "messages[" + i + "].content must be a string or an array of text parts");
            }
            String name = Character.toUpperCase(role.charAt(0)) + role.substring(1);
            b.append(String.format(Locale.ROOT, CHAT_TURN, name, t));
        }
        return b.append(CHAT_REPLY).toString();
    }

    private ObjectNode usage(Scheduler.Summary sum) {
        ObjectNode u = JSON.createObjectNode();
        u.put("prompt_tokens", sum.promptTokens()).put("completion_tokens", sum.completionTokens())
                .put("total_tokens", sum.promptTokens() + sum.completionTokens());
        InferenceStats e = sum.experts();
        if (!Double.isNaN(e.activeParamsPerToken())) {
            u.put("active_params_per_token", Math.round(e.activeParamsPerToken()));
            u.put("active_hidden_percent", Math.round(e.activeHiddenPercent() * 100) / 100.0);
        }
        return u;
    }

    private void logRequest(String id, Done d, boolean stoppedByText) {
        if (d == null) {
            log.accept("dsmoe serve: " + id + " client gone");
            return;
        }
        Scheduler.Summary sum = d.summary();
        double decode = sum.seconds() - (Double.isNaN(sum.secondsToFirstToken()) ? 0 : sum.secondsToFirstToken());
        log.accept(String.format(Locale.ROOT, "dsmoe serve: %s prompt %d, completion %d tokens (%s), first token %.3f s, %.1f tok/s, "
                        + "experts per token: attention %.2f, MLP %.2f%s", id, sum.promptTokens(), sum.completionTokens(),
                stoppedByText ? "stop sequence" : d.finish().name().toLowerCase(Locale.ROOT), sum.secondsToFirstToken(),
                sum.completionTokens() > 1 && decode > 0 ? (sum.completionTokens() - 1) / decode : Double.NaN,
                sum.experts().meanActiveAttention(), sum.experts().meanActiveMlp(),
                sum.preemptions() > 0 ? ", preempted " + sum.preemptions() + "x" : ""));
    }

    // ------------------------------------------------------------------ responses

    /** A completion's response: one JSON object, or server-sent events as the text comes. */
    private final class Reply {
        private final HttpExchange ex;
        private final String id;
        private final boolean chat;
        private final GenerationParams p;
        private final StringBuilder all = new StringBuilder();
        private OutputStream sse;

        Reply(HttpExchange ex, String id, boolean chat, GenerationParams p) {
            this.ex = ex;
            this.id = id;
            this.chat = chat;
            this.p = p;
        }

        void begin(String echo) throws IOException {
            ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
            ex.getResponseHeaders().set("Cache-Control", "no-cache");
            ex.sendResponseHeaders(200, 0);
            sse = ex.getResponseBody();
            if (chat) {
                ObjectNode chunk = chunk();
                ObjectNode choice = chunk.withArray("choices").addObject().put("index", 0);
                choice.putObject("delta").put("role", "assistant").put("content", "");
                choice.putNull("logprobs");
                choice.putNull("finish_reason");
                event(chunk);
            } else if (!echo.isEmpty()) {
                piece(echo);
            }
        }

        void piece(String text) throws IOException {
            if (text.isEmpty()) return;
            if (sse == null) {
                all.append(text);
                return;
            }
            ObjectNode chunk = chunk();
            ObjectNode choice = chunk.withArray("choices").addObject().put("index", 0);
            if (chat) choice.putObject("delta").put("content", text);
            else choice.put("text", text);
            choice.putNull("logprobs");
            choice.putNull("finish_reason");
            event(chunk);
        }

        void end(String echo, String finish, ObjectNode usage) throws IOException {
            if (sse == null) {
                ObjectNode r = JSON.createObjectNode().put("id", id).put("object", chat ? "chat.completion" : "text_completion")
                        .put("created", System.currentTimeMillis() / 1000).put("model", s.modelId());
                ObjectNode choice = r.putArray("choices").addObject().put("index", 0);
                if (chat) choice.putObject("message").put("role", "assistant").put("content", all.toString());
                else choice.put("text", echo + all);
                choice.putNull("logprobs");
                choice.put("finish_reason", finish);
                r.set("usage", usage);
                send(ex, 200, r);
                return;
            }
            ObjectNode last = chunk();
            ObjectNode choice = last.withArray("choices").addObject().put("index", 0);
            if (chat) choice.putObject("delta");
            else choice.put("text", "");
            choice.putNull("logprobs");
            choice.put("finish_reason", finish);
            event(last);
            if (p.includeUsage()) {
                ObjectNode u = chunk();
                u.putArray("choices");
                u.set("usage", usage);
                event(u);
            }
            sse.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            sse.flush();
        }

        void fail(ApiException e) throws IOException {
            if (sse == null) {
                sendError(ex, e);
                return;
            }
            event(errorBody(e));
            sse.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            sse.flush();
        }

        private ObjectNode chunk() {
            ObjectNode n = JSON.createObjectNode().put("id", id).put("object", chat ? "chat.completion.chunk" : "text_completion")
                    .put("created", System.currentTimeMillis() / 1000).put("model", s.modelId());
            if (p.includeUsage()) n.putNull("usage");
            return n;
        }

        private void event(ObjectNode n) throws IOException {
            sse.write(("data: " + JSON.writeValueAsString(n) + "\n\n").getBytes(StandardCharsets.UTF_8));
            sse.flush();
        }
    }

    private static void send(HttpExchange ex, int status, ObjectNode body) throws IOException {
        byte[] b = JSON.writeValueAsBytes(body);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, b.length);
        ex.getResponseBody().write(b);
    }

    private static ObjectNode errorBody(ApiException e) {
        ObjectNode r = JSON.createObjectNode();
        ObjectNode err = r.putObject("error").put("message", e.getMessage()).put("type", e.type);
        if (e.param != null) err.put("param", e.param);
        else err.putNull("param");
        if (e.code != null) err.put("code", e.code);
        else err.putNull("code");
        return r;
    }

    private static void sendError(HttpExchange ex, ApiException e) throws IOException {
        send(ex, e.status, errorBody(e));
    }
}
