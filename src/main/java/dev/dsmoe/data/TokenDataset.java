package dev.dsmoe.data;

import dev.dsmoe.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;

/**
 * A prepared data directory opened for training or evaluation: {@code meta.json}, the two
 * memory-mapped shards (sizes checked against meta.json) and, on demand, {@code tokenizer.json}.
 * <pre>
 * try (TokenDataset data = TokenDataset.open(Path.of("data"))) {
 *     BatchSampler train = BatchSampler.random(data.train(), batch, seq, seed);
 *     BatchSampler val = BatchSampler.sequential(data.val(), batch, seq);
 * }
 * </pre>
 */
public final class TokenDataset implements AutoCloseable {
    public static final String TRAIN = "train.bin";
    public static final String VAL = "val.bin";
    public static final String TOKENIZER = "tokenizer.json";

    private final Path dir;
    private final DataMeta meta;
    private final TokenShard train;
    private final TokenShard val;
    private Tokenizer tokenizer;

    private TokenDataset(Path dir, DataMeta meta, TokenShard train, TokenShard val) {
        this.dir = dir;
        this.meta = meta;
        this.train = train;
        this.val = val;
    }

    /** Opens {@code dir}; a missing or inconsistent file gives one IllegalArgumentException naming it. */
    public static TokenDataset open(Path dir) throws IOException {
        DataMeta meta = DataMeta.read(dir);
        TokenShard train = TokenShard.open(dir.resolve(TRAIN), meta.dtype(), meta.trainTokens());
        try {
            TokenShard val = TokenShard.open(dir.resolve(VAL), meta.dtype(), meta.valTokens());
            return new TokenDataset(dir, meta, train, val);
        } catch (IOException | RuntimeException e) {
            train.close();
            throw e;
        }
    }

    public Path dir() {
        return dir;
    }

    public DataMeta meta() {
        return meta;
    }

    public TokenShard train() {
        return train;
    }

    public TokenShard val() {
        return val;
    }

    public int vocabSize() {
        return meta.vocabSize();
    }

    /** The tokenizer that produced the shards (read on first use). */
    public synchronized Tokenizer tokenizer() throws IOException {
        if (tokenizer == null) tokenizer = Tokenizer.load(dir.resolve(TOKENIZER));
        return tokenizer;
    }

    @Override
    public void close() {
        train.close();
        val.close();
    }
}
