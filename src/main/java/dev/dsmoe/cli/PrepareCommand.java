package dev.dsmoe.cli;

import dev.dsmoe.data.CorpusPreparer;
import dev.dsmoe.data.DataMeta;
import dev.dsmoe.data.TextSources;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ./dsmoe prepare}: text to a byte-level BPE tokenizer and memory-mapped token shards. */
@Command(name = "prepare", mixinStandardHelpOptions = true,
        description = {"Train a byte-level BPE tokenizer on a sample of the corpus and encode the corpus into memory-mapped"
                + " token shards: train.bin, val.bin (uint16 ids; uint32 above 65536 ids), meta.json and tokenizer.json"
                + " (Hugging Face format).",
                "Default corpus: the running JDK's lib/src.zip. One document per file, zip entry or JSONL line, each followed"
                + " by <|endoftext|>; documents go to validation by a hash of their text.",
                "Does nothing when the output is up to date (same inputs and options)."})
final class PrepareCommand implements Callable<Integer> {

    @Option(names = "--input", paramLabel = "PATH",
            description = {"A .zip/.jar (one document per entry), a directory (one per file), a .jsonl file (one per line,"
                    + " field \"text\") or a text file; repeat for several. Default: ${java.home}/lib/src.zip."})
    List<Path> inputs;

    @Option(names = "--glob", defaultValue = "**", paramLabel = "GLOB",
            description = "Which zip entries / directory files to read (relative paths, Java glob). Default: ${DEFAULT-VALUE}.")
    String glob;

    @Option(names = "--vocab-size", defaultValue = "8192", paramLabel = "N",
            description = "Tokenizer vocabulary size, <|endoftext|> included. Default: ${DEFAULT-VALUE}.")
    int vocabSize;

    @Option(names = "--out", defaultValue = "data", paramLabel = "DIR", description = "Output directory. Default: ${DEFAULT-VALUE}.")
    Path out;

    @Option(names = "--val-fraction", defaultValue = "0.005", paramLabel = "F",
            description = "Fraction of documents for validation, chosen by a hash of their text. Default: ${DEFAULT-VALUE}.")
    double valFraction;

    @Option(names = "--tokenizer-sample-mb", defaultValue = "32", paramLabel = "MB",
            description = "Megabytes of training documents the tokenizer learns from. Default: ${DEFAULT-VALUE}.")
    long sampleMb;

    @Option(names = "--tokenizer", paramLabel = "FILE",
            description = "Use this tokenizer.json (byte-level BPE, with <|endoftext|>) instead of training one.")
    Path tokenizer;

    @Option(names = "--force", description = "Prepare again even when the output is up to date.")
    boolean force;

    @Override
    public Integer call() throws Exception {
        List<Path> in = inputsOrDefault(inputs);
        checkVocabSize(vocabSize);
        Progress progress = new Progress();
        CorpusPreparer.Result r;
        try {
            r = CorpusPreparer.prepare(new CorpusPreparer.Options(in, glob, out, vocabSize, valFraction, sampleMb << 20,
                    tokenizer, force), progress);
        } finally {
            Terminal.clearStatus();
        }
        report(out, r);
        return 0;
    }

    /** The inputs given, or the JDK's src.zip (the default corpus) when none is; bad input when it has none. */
    static List<Path> inputsOrDefault(List<Path> given) {
        if (given != null && !given.isEmpty()) return given;
        Path def = TextSources.defaultInput();
        if (!Files.isRegularFile(def)) {
            throw new Errors.UserError("no --input given and this JDK has no " + def
                    + " (some JDK builds leave the sources out); pass --input PATH");
        }
        return List.of(def);
    }

    static void checkVocabSize(int vocabSize) {
        if (vocabSize > (1 << 24)) throw new Errors.UserError("--vocab-size " + vocabSize + " is too large (at most 16777216)");
    }

    /** What preparing {@code out} did, on stdout: the tokenizer, the documents and tokens, or that it was up to date. */
    static void report(Path out, CorpusPreparer.Result r) {
        DataMeta m = r.meta();
        long docs = m.trainDocuments() + m.valDocuments();
        long tokens = m.trainTokens() + m.valTokens();
        long bytes = m.trainBytes() + m.valBytes();
        if (r.upToDate()) {
            System.out.printf(Locale.ROOT, "%s is up to date: %d documents, %s tokens from %s; nothing to do (--force prepares again)%n",
                    out, docs, human(tokens), m.source());
            return;
        }
        if (m.tokenizerTrained()) {
            System.out.printf(Locale.ROOT, "tokenizer: %d ids trained on %.1f MB of text in %.1f s%n",
                    m.vocabSize(), m.tokenizerSampleBytes() / 1e6, r.tokenizerSeconds());
        }
        System.out.printf(Locale.ROOT,
                "prepared %d documents (%d train, %d val), %.1f MB -> %s tokens (%s), %.2f bytes/token in %s"
                        + " (encoding %.1f MB/s); skipped %d not UTF-8%s -> %s%n",
                docs, m.trainDocuments(), m.valDocuments(), bytes / 1e6, human(tokens), m.dtype().jsonName(),
                tokens == 0 ? 0.0 : bytes / (double) tokens, Terminal.seconds(r.seconds()),
                r.encodeSeconds() > 0 ? r.encodedBytes() / 1e6 / r.encodeSeconds() : 0.0,
                m.skipped(), m.skipped() > 0 ? " (first: " + r.firstSkipped() + ")" : "", out);
        if (m.valTokens() == 0) {
            System.out.println("note: the validation split is empty (a small corpus); raise --val-fraction to get one");
        }
    }

    static String human(long n) {
        if (n >= 1_000_000) return String.format(Locale.ROOT, "%.1f M", n / 1e6);
        if (n >= 10_000) return String.format(Locale.ROOT, "%.1f k", n / 1e3);
        return Long.toString(n);
    }

    /** The status line of each phase: phase, bar, amount, percent, rate, ETA (on a terminal only). */
    static final class Progress implements CorpusPreparer.Listener {
        String phase = "";
        long start = System.nanoTime();
        Terminal.Progress display = new Terminal.Progress(null, false);

        @Override
        public void phase(String name) {
            phase = name;
            start = System.nanoTime();
            display = new Terminal.Progress(null, false);
            Terminal.status(name + " ...");
        }

        @Override
        public void progress(long done, long total) {
            long now = System.nanoTime();
            if (done == 0) start = now; // e.g. merging starts after counting pre-tokens
            if (!display.due(done, total, false)) return;
            double f = total <= 0 ? 0 : Math.min(1, done / (double) total);
            double secs = (now - start) / 1e9;
            boolean merges = phase.startsWith("training");
            String amount = merges ? String.format(Locale.ROOT, "%d/%d merges", done, total)
                    : String.format(Locale.ROOT, "%.1f/%.1f MB", done / 1e6, total / 1e6);
            String rate = secs <= 0 ? "" : merges ? String.format(Locale.ROOT, "%.0f merges/s", done / secs)
                    : String.format(Locale.ROOT, "%.1f MB/s", done / 1e6 / secs);
            display.show(String.format(Locale.ROOT, "%-18s %s %s %3.0f%% %s%s", phase, Terminal.bar(done, total), amount,
                    f * 100, rate, Terminal.eta(secs, f)));
        }
    }
}
