package dev.dsmoe.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs {@code bench/pytorch_peer.py} (Debian's python3-torch) as a separate process for
 * side-by-side figures. The engine never needs Python: when the interpreter, torch or the script
 * is missing, {@link #available()} says why and the benchmarks skip the peer.
 */
public final class PyTorchPeer {

    private static final ObjectMapper JSON = new ObjectMapper();
    private final Path script;
    private final String python;
    private final String missing;

    public PyTorchPeer(Path script) {
        this.script = script;
        this.python = Files.isExecutable(Path.of("/usr/bin/python3")) ? "/usr/bin/python3" : "python3";
        this.missing = probe();
    }

    private String probe() {
        if (!Files.isRegularFile(script)) return script + " not found (run from the repository root)";
        try {
            Process p = new ProcessBuilder(python, "-c", "import torch").redirectErrorStream(true).start();
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
                return "python3-torch is not installed (apt-get install python3-torch)";
            }
            return null;
        } catch (IOException | InterruptedException e) {
            return "no python3 (" + e.getMessage() + ")";
        }
    }

    /** Null when the peer can run, else why not. */
    public String unavailableReason() {
        return missing;
    }

    public boolean available() {
        return missing == null;
    }

    /**
     * The peer's losses (float64) for the given weights on the given tokens: writes a temporary
     * model directory (config.json, model.safetensors) and token file, runs {@code loss}, cleans up.
     *
     * @param targets next-token ids, -1 to ignore a position
     */
    public JsonNode loss(dev.dsmoe.model.ParamLayout layout, float[] params, int[] inputs, int[] targets, int batch)
            throws IOException {
        Path dir = Files.createTempDirectory("dsmoe-peer-check");
        try {
            Files.writeString(dir.resolve(dev.dsmoe.io.ModelFiles.CONFIG), layout.config().toJson());
            dev.dsmoe.io.ModelFiles.modelTensors(layout, params, dev.dsmoe.io.SafeTensors.DType.F32)
                    .write(dir.resolve(dev.dsmoe.io.ModelFiles.MODEL));
            java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocate(4 * (inputs.length + targets.length))
                    .order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int v : inputs) buf.putInt(v);
            for (int v : targets) buf.putInt(v);
            Files.write(dir.resolve("tokens.bin"), buf.array());
            return run(List.of("loss", "--model", dir.toString(), "--tokens", dir.resolve("tokens.bin").toString(),
                    "--batch", Integer.toString(batch)), 600);
        } finally {
            try (var s = Files.list(dir)) {
                for (Path f : s.toList()) Files.deleteIfExists(f);
            }
            Files.deleteIfExists(dir);
        }
    }

    /** Runs the script with {@code args}; returns its last stdout line parsed as JSON. */
    public JsonNode run(List<String> args, long timeoutSeconds) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(python, script.toString()));
        cmd.addAll(args);
        Path log = Files.createTempFile("dsmoe-peer", ".log");
        try {
            Process p = new ProcessBuilder(cmd).redirectError(log.toFile()).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException("pytorch peer timed out: " + String.join(" ", cmd));
            }
            if (p.exitValue() != 0) {
                throw new IOException("pytorch peer failed (" + p.exitValue() + "): " + Files.readString(log).strip());
            }
            String last = out.strip().lines().reduce((a, b) -> b).orElse("{}");
            return JSON.readTree(last);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        } finally {
            Files.deleteIfExists(log);
        }
    }
}
