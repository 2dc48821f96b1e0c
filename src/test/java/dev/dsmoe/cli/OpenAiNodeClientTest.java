package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The official {@code openai} npm client (version 7, pinned by the committed package-lock.json in
 * {@code src/test/js/openai-client}) against the server: completions and chat completions,
 * streamed and not, 16 concurrent streams each with the text greedy decoding gives its prompt
 * alone, and prompts past the context raising the client's {@code APIError} with status 400 and
 * the server's code and param. {@code client.mjs} reports what the client saw as JSON; this test
 * checks it. Skipped only where {@code node} is not installed; {@code npm ci} runs here when the
 * folder has no installed packages yet (.ci/run runs it before the tests). openai 7 declares
 * Node.js 22 or newer; it runs on the machine's Node.js 20 (npm ci warns, EBADENGINE).
 */
class OpenAiNodeClientTest {

    static final Path CLIENT = Path.of("src", "test", "js", "openai-client");

    @TempDir
    static Path dir;
    static boolean node;
    static TinyServer served;

    @BeforeAll
    static void start() throws Exception {
        node = nodeInstalled();
        if (!node) { // the test skips, saying why (an assumption here would hide it: Surefire would count no test at all)
            System.err.println("OpenAiNodeClientTest: node is not installed (not on the PATH): the openai npm client test is skipped");
            return;
        }
        installClient();
        served = TinyServer.start(dir);
    }

    @AfterAll
    static void stop() throws Exception {
        if (served != null) served.close();
    }

    static boolean nodeInstalled() throws InterruptedException {
        try {
            Process p = new ProcessBuilder("node", "--version").redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        }
    }

    /** {@code npm ci} unless node_modules already holds what package-lock.json pins. */
    static void installClient() throws Exception {
        Path installed = CLIENT.resolve("node_modules").resolve(".package-lock.json");
        Path lock = CLIENT.resolve("package-lock.json");
        if (Files.isRegularFile(installed) && Files.getLastModifiedTime(installed).compareTo(Files.getLastModifiedTime(lock)) >= 0) return;
        Run r = run(List.of("npm", "ci", "--no-audit", "--no-fund"), 600);
        assertEquals(0, r.status(), "npm ci in " + CLIENT + " failed:\n" + r.out() + r.err());
    }

    record Run(int status, String out, String err) {}

    /** Runs {@code command} in the client's folder, its output to files (no pipe to fill), within {@code seconds}. */
    static Run run(List<String> command, long seconds) throws Exception {
        Path out = Files.createTempFile(dir, "out", ".txt"), err = Files.createTempFile(dir, "err", ".txt");
        Process p = new ProcessBuilder(command).directory(CLIENT.toFile()).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly().waitFor();
            fail(String.join(" ", command) + " did not finish in " + seconds + " s:\n" + Files.readString(out) + Files.readString(err));
        }
        return new Run(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
    }

    @Test
    void theOpenAiNodeClientCompletesChatsStreamsAndGetsErrors() throws Exception {
        Assumptions.assumeTrue(node, "skipped: node is not installed (not on the PATH); the openai npm client test needs Node.js and npm");
        Run r = run(List.of("node", "client.mjs", served.base, TinyServer.API_KEY, TinyServer.MODEL_ID), 300);
        assertEquals(0, r.status(), "node client.mjs failed:\n" + r.err() + r.out());
        JsonNode j = new ObjectMapper().readTree(r.out().lines().reduce((a, b) -> b).orElse(""));
        assertEquals(TinyServer.MODEL_ID, j.get("models").get(0).asText(), j.toString());

        JsonNode c = j.get("completion");
        assertEquals("text_completion", c.get("object").asText());
        assertEquals(served.greedy("class A {", 6), c.get("text").asText(), "the greedy completion");
        assertEquals("length", c.get("finish_reason").asText());
        assertEquals(6, c.get("usage").get("completion_tokens").asInt());
        assertEquals(c.get("usage").get("prompt_tokens").asInt() + 6, c.get("usage").get("total_tokens").asInt());
        JsonNode cs = j.get("completionStream");
        assertEquals(c.get("text").asText(), cs.get("text").asText(), "the stream's text is the plain reply's");
        assertTrue(cs.get("chunks").asInt() >= 3, "chunks of text, the finish and the usage: " + cs);
        assertEquals("length", cs.get("finish_reason").asText());
        assertEquals(c.get("usage"), cs.get("usage"), "include_usage gives the plain reply's usage");

        JsonNode chat = j.get("chat");
        assertEquals("chat.completion", chat.get("object").asText());
        assertEquals("assistant", chat.get("role").asText());
        assertTrue(chat.get("content").isTextual(), chat.toString());
        assertTrue(List.of("stop", "length").contains(chat.get("finish_reason").asText()), chat.toString());
        JsonNode chatStream = j.get("chatStream");
        assertEquals("assistant", chatStream.get("role").asText());
        assertEquals(chat.get("content").asText(), chatStream.get("content").asText(), "the streamed chat's text is the plain reply's");
        assertEquals(chat.get("finish_reason").asText(), chatStream.get("finish_reason").asText());
        JsonNode helper = j.get("chatStreamHelper");
        assertEquals(chat.get("content").asText(), helper.get("content").asText(), "the client's stream helper assembles the same reply");
        assertEquals(helper.get("content").asText(), helper.get("deltas").asText());
        assertEquals(chat.get("finish_reason").asText(), helper.get("finish_reason").asText());
        assertEquals(chat.get("usage"), helper.get("usage"));

        JsonNode all = j.get("concurrent");
        assertEquals(16, all.size());
        for (JsonNode s : all) {
            int n = s.get("max_tokens").asInt();
            assertEquals(served.greedy(s.get("prompt").asText(), n), s.get("text").asText(), "stream " + s);
            assertEquals("length", s.get("finish_reason").asText(), s.toString());
            assertEquals(n, s.get("completion_tokens").asInt(), s.toString());
        }

        JsonNode over = j.get("overlong");
        for (String[] k : new String[][] {{"completion", "prompt"}, {"completionStream", "prompt"}, {"chat", "messages"},
                {"maxTokens", "max_tokens"}}) {
            JsonNode e = over.get(k[0]);
            assertTrue(e.get("raised").asBoolean(), k[0] + ": no error raised: " + e);
            assertTrue(e.get("apiError").asBoolean() && e.get("badRequest").asBoolean(), k[0] + ": " + e);
            assertEquals(400, e.get("status").asInt(), k[0] + ": " + e);
            assertEquals("context_length_exceeded", e.get("code").asText(), k[0] + ": " + e);
            assertEquals(k[1], e.get("param").asText(), k[0] + ": " + e);
            assertEquals("invalid_request_error", e.get("type").asText(), k[0] + ": " + e);
            assertFalse(e.get("message").asText().isBlank(), k[0] + ": " + e);
        }
        long deadline = System.nanoTime() + 10_000_000_000L;
        while ((served.scheduler.running() > 0 || served.scheduler.engine().cache().blocksInUse() > 0) && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertEquals(0, served.scheduler.running(), "nothing left running");
        assertEquals(0, served.scheduler.engine().cache().blocksInUse(), "no KV block left in use");
    }
}
