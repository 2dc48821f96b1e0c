package dev.dsmoe.bench;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * llama.cpp's {@code llama-server} as a serving peer for {@code bench serve}: started as a
 * separate process on a free loopback port with one slot per client ({@code -np C}, continuous
 * batching on, a context of C slots of the benchmark's length), then driven by the same client
 * code as our server. Optional: the engine never needs it, and a missing binary or model is one
 * clear line before anything runs. Its output goes to a log file beside nothing the user owns
 * (a temp file, named in the error when it fails to start).
 */
public final class LlamaServerPeer implements AutoCloseable {

    private final Process process;
    private final int port;
    private final Path log;

    private LlamaServerPeer(Process process, int port, Path log) {
        this.process = process;
        this.port = port;
        this.log = log;
    }

    /** Checks the binary and the GGUF exist before a long benchmark starts: null when fine, else why. */
    public static String problem(Path binary, Path gguf) {
        if (!Files.isExecutable(binary)) return "llama-server not found or not executable at " + binary
                + " (build it: cmake --build BUILD --target llama-server; see BENCHMARKS.md)";
        if (!Files.isRegularFile(gguf)) return "GGUF model not found at " + gguf + " (bench/llamacpp_peer.sh writes one)";
        return null;
    }

    /**
     * Starts {@code binary -m gguf} with {@code slots} parallel slots of {@code slotContext}
     * positions each on {@code threads} threads and waits (up to 5 minutes: a 1B model maps in
     * seconds, but a cold page cache reads gigabytes) until its {@code /health} answers 200.
     */
    public static LlamaServerPeer start(Path binary, Path gguf, int threads, int slots, int slotContext)
            throws IOException, InterruptedException {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        Path log = Files.createTempFile("llama-server-", ".log");
        List<String> cmd = new ArrayList<>(List.of(binary.toString(), "-m", gguf.toString(), "--host", "127.0.0.1",
                "--port", Integer.toString(port), "-t", Integer.toString(threads), "-np", Integer.toString(slots),
                "-c", Integer.toString(slots * slotContext), "-cb", "--no-webui"));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        LlamaServerPeer peer = new LlamaServerPeer(p, port, log);
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
        while (System.nanoTime() < deadline) {
            if (!p.isAlive()) {
                throw new IOException("llama-server exited with status " + p.exitValue() + " before it was ready; its output: " + log);
            }
            try {
                HttpResponse<Void> r = http.send(HttpRequest.newBuilder(URI.create(peer.baseUrl() + "/health"))
                        .timeout(Duration.ofSeconds(2)).GET().build(), HttpResponse.BodyHandlers.discarding());
                if (r.statusCode() == 200) return peer;
            } catch (IOException notYet) {
                // not listening yet
            }
            Thread.sleep(200);
        }
        peer.close();
        throw new IOException("llama-server was not ready within 5 minutes; its output: " + log);
    }

    /** {@code http://127.0.0.1:PORT}. */
    public String baseUrl() {
        return "http://127.0.0.1:" + port;
    }

    /** Stops the server (SIGTERM, then SIGKILL after 10 s) and deletes its log. */
    @Override
    public void close() throws IOException {
        process.destroy();
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        Files.deleteIfExists(log);
    }
}
