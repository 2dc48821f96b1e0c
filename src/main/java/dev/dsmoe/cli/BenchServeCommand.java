package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.bench.InferenceBenchmarks;
import dev.dsmoe.bench.ServeBenchmarks;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code ./dsmoe bench serve}: the OpenAI server under C concurrent streaming clients, for each C. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serving throughput: starts the OpenAI server in this process and streams requests to it from C clients",
                "at once (loopback), for each concurrency C: aggregate output tokens/s, time to first token and inter-token",
                "latency (p50, p99), and each model's throughput relative to the first model's at the same C."})
final class BenchServeCommand implements Callable<Integer> {

    @Option(names = "--presets", split = ",", defaultValue = "dense-small,dsmoe-small",
            description = "Comma-separated presets with random weights. Default: ${DEFAULT-VALUE}.")
    List<String> presets;

    @Option(names = "--model", split = ",", description = "Model directories instead of presets (comma-separated).")
    List<Path> models;

    @Option(names = "--strategies", split = ";", description = {"An expert selection per model, semicolon-separated (default: each model's own).",
            "Forms: " + ExpertSelection.FORMS + "."})
    List<String> strategies;

    @Mixin
    ComputeOptions.Dtype dtype;

    @Option(names = "--concurrency", split = ",", defaultValue = "1,4,16,64", description = "Clients at once. Default: ${DEFAULT-VALUE}.")
    List<Integer> concurrency;

    @Option(names = "--prompt", defaultValue = "128", description = "Prompt tokens per request. Default: ${DEFAULT-VALUE}.")
    int prompt;

    @Option(names = "--max-tokens", defaultValue = "128", description = "New tokens per request (ignore_eos). Default: ${DEFAULT-VALUE}.")
    int maxTokens;

    @Option(names = "--requests", defaultValue = "2", description = "Requests each client sends, one after the other. Default: ${DEFAULT-VALUE}.")
    int requests;

    @Option(names = "--llama-server", paramLabel = "BIN", description = {"Also measure llama.cpp's llama-server (this binary) on --llama-model,",
            "restarted for each concurrency with that many slots (bench/llamacpp_peer.sh builds it and writes the GGUFs)."})
    Path llamaServer;

    @Option(names = "--llama-model", paramLabel = "GGUF", description = "The GGUF llama-server serves (with --llama-server).")
    Path llamaModel;

    @Option(names = "--plot", paramLabel = "PNG", description = "Also plot output tokens/s against concurrency into this PNG.")
    Path plot;

    @Option(names = "--json", description = "One JSON object per row instead of the table.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        if (concurrency.stream().anyMatch(c -> c < 1)) throw new IllegalArgumentException("--concurrency values must be >= 1, got " + concurrency);
        if ((llamaServer == null) != (llamaModel == null)) {
            throw new IllegalArgumentException("--llama-server and --llama-model go together: give both, or neither");
        }
        if (llamaServer != null) {
            String why = dev.dsmoe.bench.LlamaServerPeer.problem(llamaServer, llamaModel);
            if (why != null) throw new IllegalArgumentException(why);
        }
        ServeBenchmarks b = new ServeBenchmarks(prompt, maxTokens, requests, json ? s -> { } : s -> Terminal.status("serve " + s));
        int most = concurrency.stream().mapToInt(Integer::intValue).max().orElse(1);
        List<String> names = new ArrayList<>();
        if (models != null) models.forEach(m -> names.add(m.toString()));
        else names.addAll(presets);
        java.util.Set<String> types = new java.util.LinkedHashSet<>(); // the weight types, for the header
        for (int i = 0; i < names.size(); i++) {
            types.add(ComputeOptions.Dtype.label(models != null ? dtype.forModel(models.get(i)) : dtype.get()));
        }
        String typeLabel = String.join("/", types);
        // Rows are printed as each model (and the peer) finishes: a long sitting keeps what it measured
        // even if a later part fails.
        List<ServeBenchmarks.Row> out = new ArrayList<>();
        if (!json) {
            System.out.printf(Locale.ROOT, "serving: prompt %d, %d new tokens, %d requests per client, %s weights, %d threads%n", prompt,
                    maxTokens, requests, typeLabel, ComputeOptions.threads());
            System.out.println("| model | selection | concurrency | output tok/s | vs first model | TTFT p50 s | TTFT p99 s | ITL p50 ms | ITL p99 ms |");
            System.out.println("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        }
        for (int i = 0; i < names.size(); i++) {
            String n = names.get(i);
            InferenceModel m;
            Tokenizer tok = null;
            if (models != null) {
                Path dir = models.get(i);
                MatVec.DType weights = dtype.forModel(dir);
                MemoryCheck.model(dir, weights, prompt + maxTokens, most);
                m = InferenceModel.load(dir, weights);
                Path tf = dir.resolve(ModelFiles.TOKENIZER);
                if (Files.isRegularFile(tf)) tok = Tokenizer.load(tf, m.config().vocabSize());
                n = dir.getFileName().toString();
            } else {
                MemoryCheck.randomModel(ModelPresets.get(n), dtype.get(), prompt + maxTokens, most);
                m = InferenceBenchmarks.randomModel(n, dtype.get());
            }
            try (m) {
                ExpertSelection sel = strategies != null && i < strategies.size() ? ExpertSelection.parse(strategies.get(i), m.config())
                        : ExpertSelection.defaultFor(m.config());
                report(out, b.run(n, m, tok, sel, concurrency));
            }
        }
        if (llamaServer != null) {
            String peerName = "llama.cpp " + llamaModel.getFileName().toString().replaceFirst("\\.gguf$", "");
            try {
                b.runLlamaServer(peerName, llamaServer, llamaModel, ComputeOptions.threads(), concurrency, r -> {
                    try {
                        report(out, List.of(r));
                    } catch (java.io.IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                });
            } catch (java.io.IOException | IllegalStateException e) {
                Terminal.clearStatus();
                System.out.println("llama-server peer failed: " + e.getMessage() + " (the rows above stand)");
            }
        }
        Terminal.clearStatus();
        if (plot != null) {
            List<InferenceBenchmarks.BatchRow> pts = out.stream().map(r -> new InferenceBenchmarks.BatchRow(r.model(), r.selection(), r.dtype(),
                    r.concurrency(), r.promptTokens(), r.newTokens(), r.outputTokensPerSecond(), 0, 0, 0, 0, 0)).toList();
            byte[] png = dev.dsmoe.bench.BatchPlot.png("serving, " + typeLabel + " weights, prompt " + prompt + ", " + maxTokens
                    + " new tokens", pts);
            dev.dsmoe.io.AtomicFiles.write(plot, ch -> {
                java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(png);
                while (bb.hasRemaining()) ch.write(bb);
            });
        }
        if (ServeBenchmarks.retries() > 0 && !json) {
            System.out.println(ServeBenchmarks.retries() + " request(s) sent again after the server closed the connection before answering");
        }
        if (plot != null && !json) System.out.println("plot: " + plot);
        return 0;
    }

    private static final ObjectMapper JSON = new ObjectMapper();

    /** Adds one model's rows with their ratio to the first model's at the same concurrency, and prints them. */
    private void report(List<ServeBenchmarks.Row> out, List<ServeBenchmarks.Row> rows) throws java.io.IOException {
        Terminal.clearStatus();
        for (ServeBenchmarks.Row r : rows) {
            double first = out.stream().filter(x -> x.concurrency() == r.concurrency()).findFirst()
                    .map(ServeBenchmarks.Row::outputTokensPerSecond).orElse(r.outputTokensPerSecond());
            ServeBenchmarks.Row x = new ServeBenchmarks.Row(r.model(), r.selection(), r.dtype(), r.concurrency(), r.requests(),
                    r.promptTokens(), r.newTokens(), r.outputTokensPerSecond(), r.ttftP50(), r.ttftP99(), r.itlP50(), r.itlP99(),
                    r.outputTokensPerSecond() / first);
            out.add(x);
            if (json) System.out.println(JSON.writeValueAsString(x));
            else System.out.printf(Locale.ROOT, "| %s | %s | %d | %.1f | %.2f | %.3f | %.3f | %.1f | %.1f |%n", x.model(), x.selection(),
                    x.concurrency(), x.outputTokensPerSecond(), x.ratioToFirst(), x.ttftP50(), x.ttftP99(), 1e3 * x.itlP50(), 1e3 * x.itlP99());
        }
        System.out.flush();
    }
}
