package dev.dsmoe.cli;

import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.KvCache;
import dev.dsmoe.infer.Scheduler;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.serve.OpenAiServer;
import dev.dsmoe.tokenizer.Tokenizer;
import java.net.BindException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import sun.misc.Signal;

/** {@code ./dsmoe serve}: the OpenAI-compatible server with continuous batching. */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serve a model over OpenAI's HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health,",
                "/metrics, /tokenize, /detokenize) with continuous batching: requests share each engine step, and each may",
                "choose its own expert selection with the extension field \"expert_selection\" (e.g. \"threshold:0.48\").",
                "Stops cleanly on SIGTERM or Ctrl-C: new requests get 503, running ones finish for up to --drain-seconds."})
final class ServeCommand implements Callable<Integer> {

    @Option(names = "--model", required = true, paramLabel = "DIR", description = "Model directory (config.json, model.safetensors, tokenizer.json).")
    Path model;

    @Option(names = "--model-id", paramLabel = "NAME", description = "The id clients name the model by. Default: the directory's name.")
    String modelId;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to listen on (0.0.0.0: all). Default: ${DEFAULT-VALUE}.")
    String host;

    @Option(names = "--port", defaultValue = "8080", description = "Port (0: any free one). Default: ${DEFAULT-VALUE}.")
    int port;

    @Option(names = "--api-key", paramLabel = "KEY", description = "Require 'Authorization: Bearer KEY' (all routes but /health). Default: $DSMOE_API_KEY, else none.")
    String apiKey;

    @Mixin
    ComputeOptions.Dtype dtype;

    @Mixin
    SelectionOption strategy;

    @Option(names = "--max-batch", defaultValue = "16", description = "Most requests decoding together. Default: ${DEFAULT-VALUE}.")
    int maxBatch;

    @Option(names = "--max-queue", defaultValue = "256", description = "Most requests waiting (more get 429). Default: ${DEFAULT-VALUE}.")
    int maxQueue;

    @Option(names = "--ctx", paramLabel = "N", description = "Context per request in tokens. Default: the model's max_position_embeddings.")
    Integer ctx;

    @Option(names = "--kv-memory", paramLabel = "GiB", description = {"KV cache memory for all requests together, in GiB.",
            "Default: --max-batch full contexts, at most a third of the heap."})
    Double kvMemory;

    @Option(names = "--max-tokens-default", defaultValue = "256", description = "Tokens of a request without max_tokens (capped by the context). Default: ${DEFAULT-VALUE}.")
    int maxTokensDefault;

    @Option(names = "--drain-seconds", defaultValue = "30", description = "On SIGTERM/Ctrl-C, how long running requests may finish. Default: ${DEFAULT-VALUE}.")
    int drainSeconds;

    @Override
    public Integer call() throws Exception {
        if (maxBatch < 1 || maxQueue < 0 || maxTokensDefault < 1 || drainSeconds < 0 || port < 0 || port > 65535) {
            throw new IllegalArgumentException("need --max-batch >= 1, --max-queue >= 0, --max-tokens-default >= 1, --drain-seconds >= 0 "
                    + "and --port in [0, 65535]");
        }
        if (!Files.isDirectory(model)) throw new NoSuchFileException(model + ": no such model directory");
        Path tokFile = model.resolve(ModelFiles.TOKENIZER);
        if (!Files.isRegularFile(tokFile)) {
            throw new NoSuchFileException(tokFile + ": missing; copy the tokenizer.json of the data the model was trained on");
        }
        String key = apiKey != null ? apiKey : System.getenv("DSMOE_API_KEY");
        if (key != null && key.isBlank()) key = null;
        ModelConfig c0 = ModelFiles.readConfig(model);
        int context = ctx == null ? c0.maxPositions() : ctx;
        if (context < 2 || context > c0.maxPositions()) {
            throw new IllegalArgumentException("--ctx " + context + " must be between 2 and the model's max_position_embeddings ("
                    + c0.maxPositions() + ")");
        }
        int chunk = Engine.DEFAULT_CHUNK;
        int kvBlocks = kvBlocks(c0, context);
        MatVec.DType weights = dtype.forModel(model);
        MemoryCheck.model(model, weights, context, Math.max(1, kvBlocks / Math.max(1, perSequence(context))));
        try (InferenceModel m = InferenceModel.load(model, weights)) {
            Tokenizer tok = Tokenizer.load(tokFile, m.config().vocabSize());
            ExpertSelection sel = strategy.last(m.config());
            Engine engine = Engine.batched(m, Scheduler.engineTokens(maxBatch, chunk), context, kvBlocks);
            Scheduler scheduler = new Scheduler(engine, maxBatch, maxQueue, chunk);
            String id = modelId != null ? modelId : model.toAbsolutePath().normalize().getFileName().toString();
            OpenAiServer server;
            try {
                server = new OpenAiServer(scheduler, tok, new OpenAiServer.Settings(host, port, id, key, maxTokensDefault, sel,
                        ComputeOptions.Dtype.label(weights)), System.err::println);
            } catch (BindException e) {
                scheduler.close();
                throw new Errors.UserError("cannot listen on " + host + ":" + port + " (" + e.getMessage()
                        + "): choose another --port or stop what uses it");
            }
            CountDownLatch stop = new CountDownLatch(1);
            Signal.handle(new Signal("TERM"), s -> stop.countDown());
            Signal.handle(new Signal("INT"), s -> stop.countDown());
            var a = server.address();
            System.out.printf(Locale.ROOT, "dsmoe serve: ready on http://%s:%d, model %s (%s weights, %d threads), strategy %s, "
                            + "max batch %d, context %d, KV cache up to %d blocks of %d positions (%.1f MiB)%s%n", a.getHostString(), a.getPort(), id,
                    ComputeOptions.Dtype.label(weights), ComputeOptions.threads(), sel, maxBatch, context, kvBlocks, KvCache.DEFAULT_BLOCK,
                    kvBlocks * engine.cache().blockBytes() / (double) (1L << 20), key != null ? ", API key required" : "");
            System.out.flush();
            stop.await();
            System.err.println("dsmoe serve: draining (up to " + drainSeconds + " s for " + scheduler.running() + " running and "
                    + scheduler.waiting() + " waiting requests)");
            server.drain(drainSeconds * 1000L);
            System.err.println("dsmoe serve: stopped");
        }
        return 0;
    }

    /** Blocks per full-context sequence. */
    private static int perSequence(int context) {
        return (context + KvCache.DEFAULT_BLOCK - 1) / KvCache.DEFAULT_BLOCK;
    }

    /** --kv-memory in blocks, or by default --max-batch full contexts capped at a third of the heap (at least one context). */
    private int kvBlocks(ModelConfig c, int context) {
        long blockBytes = KvCache.bytes(c.numLayers(), c.nKv() * c.dAtt(), KvCache.DEFAULT_BLOCK, 1);
        long want;
        if (kvMemory != null) {
            if (!(kvMemory > 0)) throw new IllegalArgumentException("--kv-memory must be > 0 GiB");
            want = (long) (kvMemory * (1L << 30)) / blockBytes;
            if (want < perSequence(context)) {
                throw new IllegalArgumentException(String.format(Locale.ROOT, "--kv-memory %.3f GiB holds %d blocks, fewer than one "
                        + "context of %d tokens needs (%d): raise it or lower --ctx", kvMemory, want, context, perSequence(context)));
            }
        } else {
            want = Math.min((long) maxBatch * perSequence(context), Runtime.getRuntime().maxMemory() / 3 / blockBytes);
            want = Math.max(want, perSequence(context));
        }
        return (int) Math.min(Integer.MAX_VALUE, want);
    }
}
