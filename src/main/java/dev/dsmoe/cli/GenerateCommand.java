package dev.dsmoe.cli;

import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.Generator;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.InferenceStats;
import dev.dsmoe.infer.Sampler;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.tokenizer.StreamingText;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code ./dsmoe generate}: streams a completion of a prompt from a model directory. */
@Command(name = "generate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Complete a prompt with a trained model, streaming tokens as they come, then print the",
                "decode speed and the mean number of active experts per token (stderr).",
                "Strategies: " + ExpertSelection.FORMS + "; default: dense for Dense and DS-MoE, the training top-k for SMoE."})
final class GenerateCommand implements Callable<Integer> {

    @Option(names = "--model", required = true, paramLabel = "DIR", description = "Model directory (config.json, model.safetensors, tokenizer.json).")
    Path model;

    @Option(names = "--prompt", required = true, description = "Text to complete.")
    String prompt;

    @Mixin
    SelectionOption strategy;

    @Option(names = "--max-tokens", defaultValue = "200", description = "Most tokens to generate. Default: ${DEFAULT-VALUE}.")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0.8", description = "Sampling temperature (0: greedy). Default: ${DEFAULT-VALUE}.")
    double temperature;

    @Option(names = "--top-k", defaultValue = "50", description = "Sample among the K most likely tokens (0: all). Default: ${DEFAULT-VALUE}.")
    int topK;

    @Option(names = "--top-p", defaultValue = "0.95", description = "Nucleus sampling mass (1: off). Default: ${DEFAULT-VALUE}.")
    double topP;

    @Option(names = "--seed", defaultValue = "1", description = "Sampling seed. Default: ${DEFAULT-VALUE}.")
    long seed;

    @Option(names = "--stop", description = "Stop when the text generated so far contains this string (repeatable).")
    List<String> stops = List.of();

    @Mixin
    ComputeOptions.Dtype dtype;

    @Override
    public Integer call() throws Exception {
        if (maxTokens < 1) throw new IllegalArgumentException("--max-tokens must be >= 1");
        if (temperature < 0 || topK < 0 || !(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("need --temperature >= 0, --top-k >= 0 and 0 < --top-p <= 1");
        }
        if (!Files.isDirectory(model)) throw new NoSuchFileException(model + ": no such model directory");
        Path tokFile = model.resolve(ModelFiles.TOKENIZER);
        if (!Files.isRegularFile(tokFile)) {
            throw new NoSuchFileException(tokFile + ": missing; copy the tokenizer.json of the data the model was trained on");
        }
        MatVec.DType weights = dtype.forModel(model);
        MemoryCheck.model(model, weights, Integer.MAX_VALUE); // the engine below holds the model's whole context
        try (InferenceModel m = InferenceModel.load(model, weights)) {
            // after the load has finished any interrupted save; ids at or above the model's
            // vocab_size are refused while the file is read, before any table is sized by them
            Tokenizer tok = Tokenizer.load(tokFile, m.config().vocabSize());
            ExpertSelection sel = strategy.last(m.config());
            int[] ids = tok.encode(prompt);
            if (ids.length == 0) throw new IllegalArgumentException("--prompt is empty");
            int ctx = m.config().maxPositions();
            if (ids.length >= ctx) {
                throw new IllegalArgumentException("the prompt is " + ids.length + " tokens; the model's context is " + ctx
                        + " (max_position_embeddings): shorten the prompt");
            }
            Engine engine = new Engine(m, sel);
            // a vocab_size rounded up past the tokenizer's ids is common: mask the extra rows (never
            // trained targets) out of sampling rather than refuse the model
            Sampler sampler = temperature == 0 ? Sampler.greedy(m.config().vocabSize(), tok::canDecode)
                    : new Sampler(m.config().vocabSize(), temperature, topK, topP, seed, tok::canDecode);
            PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8); // UTF-8 whatever the locale
            out.print(prompt);
            StreamingText text = new StreamingText(tok);
            Generator.Result r = new Generator(engine, sampler).generate(ids, maxTokens, tok.endOfTextId(), t -> {
                String fresh = text.add(t);
                out.print(fresh);
                out.flush();
                for (String s : stops) if (text.lastAddCompleted(s)) return false;
                return true;
            });
            out.print(text.finish());
            out.println();
            InferenceStats st = engine.stats();
            System.err.printf(Locale.ROOT, "dsmoe generate: %d tokens (%s), prefill %.0f tok/s, decode %.1f tok/s, strategy %s, "
                            + "active experts per token: attention %.2f of %d, MLP %.2f of %d (active hidden %.1f%%)%n",
                    r.tokens().length, r.reason().name().toLowerCase(Locale.ROOT).replace('_', ' '),
                    ids.length / Math.max(1e-9, r.prefillSeconds()), r.decodeTokensPerSecond(), sel,
                    st.meanActiveAttention(), m.config().nAtt(), st.meanActiveMlp(), m.config().nFfd(), st.activeHiddenPercent());
        }
        return 0;
    }
}
