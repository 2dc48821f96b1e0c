package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

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
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A tiny model trained for three steps and served over HTTP on a random loopback port, with an
 * API key: the server that the real-client tests ({@link OpenAiNodeClientTest},
 * {@link LangChain4jClientTest}) point their clients at.
 */
final class TinyServer implements AutoCloseable {

    static final String MODEL_ID = "tiny", API_KEY = "test-key";

    final InferenceModel model;
    final Tokenizer tok;
    final ExpertSelection selection;
    final Scheduler scheduler;
    final OpenAiServer server;
    /** {@code http://127.0.0.1:PORT}, without {@code /v1}. */
    final String base;

    private TinyServer(InferenceModel model, Tokenizer tok, Scheduler scheduler, OpenAiServer server, ExpertSelection selection) {
        this.model = model;
        this.tok = tok;
        this.scheduler = scheduler;
        this.server = server;
        this.selection = selection;
        this.base = "http://127.0.0.1:" + server.address().getPort();
    }

    /** Trains the tiny model under {@code dir} and serves it, batches of up to 16, 64 waiting. */
    static TinyServer start(Path dir) throws Exception {
        Path data = TrainCommandTest.prepareData(dir);
        Path out = dir.resolve("model");
        List<String> args = new ArrayList<>(List.of(TrainCommandTest.argsFor(data, "--out", out.toString(), "--steps", "3")));
        args.set(args.indexOf("--max-position-embeddings") + 1, "128"); // room for chat prompts
        PrepareCommandTest.Run r = PrepareCommandTest.run(args.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        InferenceModel model = InferenceModel.load(out, MatVec.DType.F32);
        Tokenizer tok = Tokenizer.load(out.resolve(ModelFiles.TOKENIZER), model.config().vocabSize());
        Engine e = Engine.batched(model, Scheduler.engineTokens(16, Engine.DEFAULT_CHUNK), model.config().maxPositions(), 64);
        Scheduler scheduler = new Scheduler(e, 16, 64, Engine.DEFAULT_CHUNK);
        ExpertSelection sel = ExpertSelection.defaultFor(model.config());
        OpenAiServer server = new OpenAiServer(scheduler, tok, new OpenAiServer.Settings("127.0.0.1", 0, MODEL_ID, API_KEY, 8,
                sel, "f32"), s -> { });
        return new TinyServer(model, tok, scheduler, server, sel);
    }

    /** The text greedy decoding gives {@code prompt} alone, through the generator (no server, no batch). */
    String greedy(String prompt, int maxTokens) {
        Generator alone = new Generator(new Engine(model, selection), Sampler.greedy(model.config().vocabSize(), tok::canDecode));
        return tok.decode(alone.generate(tok.encode(prompt), maxTokens, -1, null).tokens());
    }

    @Override
    public void close() throws Exception {
        server.close();
        model.close();
    }
}
