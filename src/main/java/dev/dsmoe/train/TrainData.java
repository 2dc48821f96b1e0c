package dev.dsmoe.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.data.Batch;
import dev.dsmoe.data.BatchSampler;
import dev.dsmoe.data.DataMeta;
import dev.dsmoe.data.TokenDataset;
import dev.dsmoe.data.TokenShard;
import dev.dsmoe.kernels.CrossEntropy;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The prepared token shards of a training run, as batch sources: random windows (reproducible
 * from the seed and the step) for training, consecutive windows for validation.
 */
public final class TrainData implements AutoCloseable {

    private final TokenDataset dataset;
    private final String fingerprint;

    private TrainData(TokenDataset dataset, String fingerprint) {
        this.dataset = dataset;
        this.fingerprint = fingerprint;
    }

    /** Opens {@code dir} (train.bin, val.bin, meta.json, tokenizer.json from {@code dsmoe prepare}). */
    public static TrainData open(Path dir) throws IOException {
        TokenDataset ds = TokenDataset.open(dir);
        try {
            return new TrainData(ds, fingerprint(dir));
        } catch (IOException | RuntimeException e) {
            ds.close();
            throw e;
        }
    }

    /**
     * SHA-256 of {@code dir/meta.json} without its "created" time and tokenizer timing: it names
     * what the data is (inputs, settings, token and document counts), not where it lies, so a
     * moved or copied directory keeps it, and so does an identical re-run of {@code prepare}
     * (which writes the same shards), while other inputs or settings change it.
     */
    static String fingerprint(Path dir) throws IOException {
        Path f = dir.resolve(DataMeta.FILE);
        JsonNode meta = new ObjectMapper().readTree(Files.readString(f));
        if (!(meta instanceof ObjectNode o)) throw new IOException(f + ": not a JSON object; run ./dsmoe prepare again");
        o.remove("created");
        if (o.get("tokenizer") instanceof ObjectNode t) t.remove("seconds");
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(new ObjectMapper().writeValueAsBytes(o));
            return "sha256:" + HexFormat.of().formatHex(digest);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e); // every JDK has SHA-256
        }
    }

    /** The data directory a checkpoint was trained on (recorded in trainer_state.json), or null. */
    public static Path dataDirOf(Path checkpoint) {
        try {
            TrainerState s = TrainerState.fromJson(Files.readString(checkpoint.resolve(TrainerState.FILE)));
            return s.data() == null || s.data().isBlank() ? null : Path.of(s.data());
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    public int vocabSize() { return dataset.vocabSize(); }

    public Path dir() { return dataset.dir(); }

    public Path tokenizer() { return dataset.dir().resolve(TokenDataset.TOKENIZER); }

    /** A one-line description for trainer_state.json: the directory (resume finds the data there). */
    public String description() { return dataset.dir().toAbsolutePath().toString(); }

    /** What the data is, whatever its directory: see {@link #fingerprint(Path)}. */
    public String fingerprint() { return fingerprint; }

    /** Random training windows. */
    public BatchSource train(int batch, int seq, long seed) {
        return new Source(BatchSampler.random(dataset.train(), batch, seq, seed));
    }

    /** Consecutive validation windows, or null when the validation shard is shorter than one window. */
    public BatchSource validation(int batch, int seq) {
        TokenShard v = dataset.val();
        if (v.size() < seq + 1L) return null;
        return new Source(BatchSampler.sequential(v, batch, seq));
    }

    /** Validation batches in one sequential pass. */
    public long validationBatches(int batch, int seq) {
        TokenShard v = dataset.val();
        return v.size() < seq + 1L ? 0 : BatchSampler.sequential(v, batch, seq).steps();
    }

    @Override
    public void close() {
        dataset.close();
    }

    /** Adapts a sampler; rows past the end of a sequential pass get ignored targets. */
    private static final class Source implements BatchSource {
        private final BatchSampler sampler;
        private final Batch batch;

        Source(BatchSampler sampler) {
            this.sampler = sampler;
            this.batch = sampler.newBatch();
        }

        @Override
        public void next(int[] input, int[] target, int b, int seq) {
            if (b != batch.batch || seq != batch.seq) {
                throw new IllegalArgumentException("batch shape " + b + " x " + seq + " differs from the data source's");
            }
            int rows = sampler.next(batch);
            int n = rows * seq;
            System.arraycopy(batch.inputs, 0, input, 0, n);
            System.arraycopy(batch.targets, 0, target, 0, n);
            java.util.Arrays.fill(input, n, b * seq, 0);
            java.util.Arrays.fill(target, n, b * seq, CrossEntropy.IGNORE);
        }

        @Override
        public long position() { return sampler.step(); }

        @Override
        public void seek(long position) { sampler.seek(position); }
    }
}
