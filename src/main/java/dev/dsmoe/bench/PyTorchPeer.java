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
 * is missing, {@link #available()} says why and the benchmarks skip the peer. The interpreter is
 * {@code DSMOE_PYTHON} when set, else the first of /usr/bin/python3 and {@code python3} that has torch.
 */
public final class PyTorchPeer {

    private static final ObjectMapper JSON = new ObjectMapper();
    private final Path script;
    private final String python;
    private final String missing;

    public PyTorchPeer(Path script) {
        this.script = script;
        String env = System.getenv("DSMOE_PYTHON");
        // the python3 first on PATH may be a pyenv or venv one without torch: take the first that has it
        List<String> candidates = env != null && !env.isBlank() ? List.of(env.strip())
                : List.of("/usr/bin/python3", "python3");
        String found = null, why = null;
        if (!Files.isRegularFile(script)) {
            why = script + " not found (run from the repository root)";
        } else {
            for (String c : candidates) {
                why = probe(c);
                if (why == null) {
                    found = c;
                    break;
                }
            }
        }
        this.python = found != null ? found : candidates.getFirst();
        this.missing = why;
    }

    /** Null when {@code python} imports torch, else why not. */
    private static String probe(String python) {
        try {
            Process p = new ProcessBuilder(python, "-c", "import torch").redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
                p.destroyForcibly();
                return python + " has no torch (apt-get install python3-torch, or set DSMOE_PYTHON"
                        + " to a python3 that has it)";
            }
            return null;
        } catch (IOException e) {
            return "no python3 (" + e.getMessage() + ")";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted";
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
            Files.writeString(dir.resolve(dev.dsmoe.io.ModelFiles.CONFIG), dev.dsmoe.io.ConfigJson.toJson(layout.config()));
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
