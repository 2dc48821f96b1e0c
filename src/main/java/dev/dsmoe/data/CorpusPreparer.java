package dev.dsmoe.data;

import dev.dsmoe.io.AtomicFiles;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.tokenizer.BpeTrainer;
import dev.dsmoe.tokenizer.IntArray;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Text to a prepared data directory ({@code ./dsmoe prepare}): trains a tokenizer on a sample of
 * the training documents (or loads one), encodes every document followed by
 * {@code <|endoftext|>} into {@code train.bin} or {@code val.bin} by a hash of its text
 * (deterministic: the same document always lands in the same split), then writes
 * {@code tokenizer.json} and {@code meta.json}.
 *
 * <p>Every file is written to its own temporary file ({@link AtomicFiles#createTemp}), forced to
 * disk, and renamed into place only when all are complete, {@code meta.json} last (it is deleted
 * first, so an interrupted run leaves a directory that {@link TokenDataset#open} refuses, never a
 * mixed one); each rename is forced to disk with its directory. On failure this run's temporary
 * files are removed and existing files are left as they were; those of a killed earlier run are
 * removed by the next ({@link AtomicFiles#removeStaleTemps}). A run whose inputs (paths, sizes, times) and
 * settings match the existing {@code meta.json}, with shards of the right sizes, does nothing.
 *
 * <p>Encoding is parallel over documents in batches of about 8 MB, cut into byte-balanced
 * contiguous chunks, one per thread, and written in document order: the output does not depend
 * on the thread count.
 */
public final class CorpusPreparer {

    /** What to prepare. {@code tokenizerFile} null means train one with {@code vocabSize} ids. */
    public record Options(List<Path> inputs, String glob, Path out, int vocabSize, double valFraction,
                          long tokenizerSampleBytes, Path tokenizerFile, boolean force) {}

    /** Progress callbacks (called on the preparing thread). */
    public interface Listener {
        /** A phase starts ("sampling", "training tokenizer", "encoding"). */
        default void phase(String name) {}

        /** Progress in the current phase, in its own units (bytes, or merges). */
        default void progress(long done, long total) {}
    }

    /**
     * What happened. {@code upToDate}: nothing was done. Times in seconds; {@code encodedBytes}
     * is the UTF-8 text encoded (for MB/s).
     */
    public record Result(boolean upToDate, DataMeta meta, String firstSkipped, double seconds,
                         double tokenizerSeconds, double encodeSeconds, long encodedBytes) {}

    static final long BATCH_BYTES = 8L << 20;

    private CorpusPreparer() {}

    /** The settings that, with the inputs' fingerprint, decide whether an output is up to date. */
    static String settings(Options o) {
        return String.format(Locale.ROOT, "vocab_size=%d val_fraction=%s glob=%s tokenizer_sample_bytes=%d tokenizer=%s",
                o.vocabSize(), Double.toString(o.valFraction()), o.glob(), o.tokenizerSampleBytes(),
                o.tokenizerFile() == null ? "-" : o.tokenizerFile().toAbsolutePath().normalize());
    }

    public static Result prepare(Options o, Listener listener) throws IOException {
        long t0 = System.nanoTime();
        if (!(o.valFraction() >= 0 && o.valFraction() < 1)) {
            throw new IllegalArgumentException("--val-fraction must be in [0, 1), got " + o.valFraction());
        }
        if (o.tokenizerFile() == null && o.vocabSize() < 257) {
            throw new IllegalArgumentException("--vocab-size must be at least 257 (256 bytes and <|endoftext|>), got " + o.vocabSize());
        }
        if (o.tokenizerSampleBytes() < 1) throw new IllegalArgumentException("--tokenizer-sample-mb must be positive");
        TextSource source = TextSources.open(o.inputs(), o.glob(), o.out());
        String fingerprint = source.fingerprint();
        if (o.tokenizerFile() != null && Files.isRegularFile(o.tokenizerFile())) {
            fingerprint += ";tokenizer=" + Files.size(o.tokenizerFile()) + ":" + Files.getLastModifiedTime(o.tokenizerFile()).toMillis();
        }
        String settings = settings(o);
        Path out = o.out();
        if (!o.force()) {
            DataMeta existing = upToDate(out, fingerprint, settings);
            if (existing != null) return new Result(true, existing, null, seconds(t0), 0, 0, 0);
        }
        checkWritable(out);

        Tokenizer tok;
        long sampleBytes = 0;
        double tokSeconds = 0;
        if (o.tokenizerFile() != null) {
            tok = Tokenizer.load(o.tokenizerFile());
            if (tok.endOfTextId() < 0) {
                throw new IllegalArgumentException(o.tokenizerFile() + ": has no " + Tokenizer.END_OF_TEXT + " token to separate documents");
            }
        } else {
            listener.phase("sampling");
            List<String> sample = sample(source, o, listener);
            for (String s : sample) sampleBytes += utf8Length(s);
            long t1 = System.nanoTime();
            listener.phase("training tokenizer");
            tok = BpeTrainer.train(sample, o.vocabSize(), (done, total) -> listener.progress(done, total));
            tokSeconds = seconds(t1);
        }

        TokenDtype dtype = TokenDtype.forVocab(tok.vocabSize());
        AtomicFiles.removeStaleTemps(out); // those of a killed earlier run
        List<AtomicFiles.Temp> temps = new ArrayList<>();
        try {
            long t2 = System.nanoTime();
            listener.phase("encoding");
            AtomicFiles.Temp trainTmp = add(temps, AtomicFiles.createTemp(out.resolve(TokenDataset.TRAIN)));
            AtomicFiles.Temp valTmp = add(temps, AtomicFiles.createTemp(out.resolve(TokenDataset.VAL)));
            Encoded enc;
            try (ShardWriter train = new ShardWriter(trainTmp.channel(), trainTmp.target(), dtype);
                 ShardWriter val = new ShardWriter(valTmp.channel(), valTmp.target(), dtype)) {
                enc = encodeAll(source, tok, o.valFraction(), train, val, listener);
            }
            double encSeconds = seconds(t2);
            if (enc.trainDocs + enc.valDocs == 0) throw emptyCorpus(source, enc.stats);
            add(temps, AtomicFiles.writeTemp(out.resolve(TokenDataset.TOKENIZER), utf8(tok.toJson())));
            DataMeta meta = new DataMeta(DataMeta.FORMAT_VERSION, dtype, tok.vocabSize(), tok.endOfTextId(),
                    enc.trainTokens, enc.valTokens, enc.trainDocs, enc.valDocs, enc.trainBytes, enc.valBytes,
                    enc.stats.skipped(), source.description(), fingerprint, settings,
                    o.tokenizerFile() == null, sampleBytes, tokSeconds, java.time.Instant.now().toString());
            add(temps, AtomicFiles.writeTemp(out.resolve(DataMeta.FILE), utf8(meta.toJson())));
            Files.deleteIfExists(out.resolve(DataMeta.FILE));
            for (AtomicFiles.Temp t : temps) t.commit(); // meta.json last
            return new Result(false, meta, enc.stats.firstSkipped(), seconds(t0), tokSeconds, encSeconds,
                    enc.trainBytes + enc.valBytes);
        } finally {
            for (AtomicFiles.Temp t : temps) t.close(); // deletes those not renamed
        }
    }

    private static AtomicFiles.Temp add(List<AtomicFiles.Temp> temps, AtomicFiles.Temp t) {
        temps.add(t);
        return t;
    }

    private static AtomicFiles.Content utf8(String text) {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        return ch -> {
            ByteBuffer buf = ByteBuffer.wrap(b);
            while (buf.hasRemaining()) ch.write(buf);
        };
    }

    private static long utf8Length(String s) {
        long n = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            n += c < 0x80 ? 1 : c < 0x800 ? 2 : Character.isSurrogate(c) ? 2 : 3;
        }
        return n;
    }

    private static double seconds(long t0) {
        return (System.nanoTime() - t0) / 1e9;
    }

    private static IllegalArgumentException emptyCorpus(TextSource source, TextSource.ReadStats stats) {
        return new IllegalArgumentException("empty corpus: no non-empty UTF-8 documents in " + source.description()
                + (stats.skipped() > 0 ? " (" + stats.skipped() + " skipped as not UTF-8, first: " + stats.firstSkipped() + ")" : "")
                + "; check --input and --glob");
    }

    /** The existing meta if {@code out} is complete and matches, else null. */
    static DataMeta upToDate(Path out, String fingerprint, String settings) {
        try {
            DataMeta m = DataMeta.read(out);
            if (!m.inputsFingerprint().equals(fingerprint) || !m.settings().equals(settings)) return null;
            if (Files.size(out.resolve(TokenDataset.TRAIN)) != m.trainTokens() * m.dtype().bytes) return null;
            if (Files.size(out.resolve(TokenDataset.VAL)) != m.valTokens() * m.dtype().bytes) return null;
            if (!Files.isRegularFile(out.resolve(TokenDataset.TOKENIZER))) return null;
            return m;
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /** Creates {@code out} if needed and proves a file can be written there. */
    static void checkWritable(Path out) {
        try {
            if (Files.exists(out) && !Files.isDirectory(out)) {
                throw new IllegalArgumentException("--out " + out + ": exists and is not a directory; choose another --out");
            }
            Files.createDirectories(out);
            Path probe = Files.createTempFile(out, ".dsmoe-write-test", ".tmp");
            Files.delete(probe);
        } catch (AccessDeniedException e) {
            throw new IllegalArgumentException("--out " + out + ": cannot write there (permission denied); choose another --out");
        } catch (FileAlreadyExistsException e) {
            throw new IllegalArgumentException("--out " + out + ": a parent path is a file, not a directory; choose another --out");
        } catch (java.nio.file.FileSystemException e) {
            String why = e.getReason() != null ? e.getReason()
                    : e instanceof java.nio.file.NoSuchFileException ? "cannot create " + e.getFile() : e.getClass().getSimpleName();
            throw new IllegalArgumentException("--out " + out + ": cannot write there (" + why + "); choose another --out");
        } catch (IOException e) {
            throw new IllegalArgumentException("--out " + out + ": cannot write there (" + e.getMessage() + "); choose another --out");
        }
    }

    /** A 64-bit hash of a document's text, salted: the split and sample decisions. */
    static double unitHash(String text, long salt) {
        long h = BatchSampler.mix(salt, text.hashCode() ^ ((long) text.length() << 32));
        return (h >>> 11) * 0x1p-53;
    }

    static final long SPLIT_SALT = 0x5EED_5_9117L;
    static final long SAMPLE_SALT = 0x7A11_5A3BL;

    /** True when the document goes to the validation split. */
    static boolean isVal(String text, double valFraction) {
        return unitHash(text, SPLIT_SALT) < valFraction;
    }

    /** Training documents chosen by hash, about {@code tokenizerSampleBytes} in all, in corpus order. */
    static List<String> sample(TextSource source, Options o, Listener listener) throws IOException {
        long total = Math.max(1, source.totalBytes());
        double p = Math.min(1.0, 1.1 * o.tokenizerSampleBytes() / (double) total);
        List<String> docs = new ArrayList<>();
        long[] acc = {0, 0};
        TextSource.ReadStats stats = source.read(d -> {
            acc[1] += d.bytes();
            listener.progress(acc[1], total);
            if (acc[0] >= o.tokenizerSampleBytes() || isVal(d.text(), o.valFraction())) return;
            if (p < 1 && unitHash(d.text(), SAMPLE_SALT) >= p) return;
            docs.add(d.text());
            acc[0] += d.bytes();
        });
        if (stats.documents() == 0) throw emptyCorpus(source, stats);
        if (docs.isEmpty()) {
            throw new IllegalArgumentException("no training documents left for the tokenizer in " + source.description()
                    + " (all went to validation); lower --val-fraction");
        }
        return docs;
    }

    private static final class Encoded {
        long trainTokens, valTokens, trainDocs, valDocs, trainBytes, valBytes;
        TextSource.ReadStats stats;
    }

    static Encoded encodeAll(TextSource source, Tokenizer tok, double valFraction, ShardWriter train, ShardWriter val,
                             Listener listener) throws IOException {
        Encoded e = new Encoded();
        List<Document> batch = new ArrayList<>();
        long[] batchBytes = {0};
        long total = Math.max(1, source.totalBytes());
        long[] done = {0};
        IOException[] failure = {null};
        e.stats = source.read(d -> {
            if (failure[0] != null) return;
            batch.add(d);
            batchBytes[0] += d.bytes();
            if (batchBytes[0] >= BATCH_BYTES) {
                try {
                    flush(batch, tok, valFraction, train, val, e);
                } catch (IOException ex) {
                    failure[0] = ex;
                }
                done[0] += batchBytes[0];
                batchBytes[0] = 0;
                batch.clear();
                listener.progress(done[0], total);
            }
        });
        if (failure[0] != null) throw failure[0];
        flush(batch, tok, valFraction, train, val, e);
        listener.progress(total, total);
        return e;
    }

    private static void flush(List<Document> batch, Tokenizer tok, double valFraction, ShardWriter train, ShardWriter val,
                              Encoded e) throws IOException {
        int n = batch.size();
        if (n == 0) return;
        int[][] ids = new int[n][];
        boolean[] toVal = new boolean[n];
        int chunks = Math.min(Parallel.threads(), n);
        // byte-balanced contiguous chunks: chunk c starts at the first document past c/chunks of the bytes
        int[] bounds = new int[chunks + 1];
        long sum = 0;
        for (Document d : batch) sum += d.bytes();
        long acc = 0;
        int c = 1;
        for (int i = 0; i < n && c < chunks; i++) {
            acc += batch.get(i).bytes();
            while (c < chunks && acc >= sum * c / chunks) bounds[c++] = i + 1;
        }
        while (c < chunks) bounds[c++] = n;
        bounds[chunks] = n;
        int eot = tok.endOfTextId();
        Parallel.forRange(chunks, 1, (c0, c1) -> {
            IntArray buf = new IntArray(1 << 16);
            for (int ch = c0; ch < c1; ch++) {
                for (int i = bounds[ch]; i < bounds[ch + 1]; i++) {
                    String text = batch.get(i).text();
                    buf.clear();
                    tok.encodeOrdinary(text, buf);
                    buf.add(eot);
                    ids[i] = buf.toArray();
                    toVal[i] = isVal(text, valFraction);
                }
            }
        });
        for (int i = 0; i < n; i++) {
            long b = batch.get(i).bytes();
            if (toVal[i]) {
                val.write(ids[i], 0, ids[i].length);
                e.valTokens += ids[i].length;
                e.valDocs++;
                e.valBytes += b;
            } else {
                train.write(ids[i], 0, ids[i].length);
                e.trainTokens += ids[i].length;
                e.trainDocs++;
                e.trainBytes += b;
            }
        }
    }
}
