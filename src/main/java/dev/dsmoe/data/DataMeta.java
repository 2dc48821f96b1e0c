package dev.dsmoe.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * The {@code meta.json} of a prepared data directory:
 * <pre>
 * { "format_version": 1, "dtype": "uint16", "vocab_size": 8192, "eot_id": 8191,
 *   "num_tokens": {"train": N, "val": M}, "documents": {"train": D, "val": E},
 *   "bytes": {"train": B, "val": C}, "skipped_not_utf8": 0,
 *   "source": "zip .../src.zip (glob **, 15224 entries)",
 *   "inputs_fingerprint": "...", "settings": "...",
 *   "tokenizer": {"trained": true, "sample_bytes": S, "seconds": T}, "created": "2026-..." }
 * </pre>
 * {@code inputs_fingerprint} and {@code settings} decide whether a later {@code prepare} is up to date.
 */
public record DataMeta(int formatVersion, TokenDtype dtype, int vocabSize, int eotId,
                       long trainTokens, long valTokens, long trainDocuments, long valDocuments,
                       long trainBytes, long valBytes, long skipped, String source,
                       String inputsFingerprint, String settings,
                       boolean tokenizerTrained, long tokenizerSampleBytes, double tokenizerSeconds, String created) {

    /** The layout version this code writes and reads. */
    public static final int FORMAT_VERSION = 1;
    public static final String FILE = "meta.json";

    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    public String toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("format_version", formatVersion);
        o.put("dtype", dtype.jsonName());
        o.put("vocab_size", vocabSize);
        o.put("eot_id", eotId);
        o.putObject("num_tokens").put("train", trainTokens).put("val", valTokens);
        o.putObject("documents").put("train", trainDocuments).put("val", valDocuments);
        o.putObject("bytes").put("train", trainBytes).put("val", valBytes);
        o.put("skipped_not_utf8", skipped);
        o.put("source", source);
        o.put("inputs_fingerprint", inputsFingerprint);
        o.put("settings", settings);
        ObjectNode t = o.putObject("tokenizer");
        t.put("trained", tokenizerTrained);
        t.put("sample_bytes", tokenizerSampleBytes);
        t.put("seconds", tokenizerSeconds);
        o.put("created", created);
        try {
            return JSON.writeValueAsString(o) + "\n";
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Reads {@code dir/meta.json}; IllegalArgumentException naming the file when it is missing or malformed. */
    public static DataMeta read(Path dir) throws IOException {
        Path f = dir.resolve(FILE);
        JsonNode o;
        try {
            o = JSON.readTree(Files.readString(f));
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(f + ": no such file; run ./dsmoe prepare --out " + dir + " first");
        } catch (com.fasterxml.jackson.core.JsonProcessingException | java.nio.charset.MalformedInputException e) {
            throw new IllegalArgumentException(f + ": not valid JSON; run ./dsmoe prepare again");
        }
        try {
            if (o == null || !o.isObject()) throw new IllegalArgumentException("not a JSON object");
            int version = need(o, "format_version").asInt();
            if (version != FORMAT_VERSION) {
                throw new IllegalArgumentException("format_version " + version + ", this build reads " + FORMAT_VERSION);
            }
            JsonNode tok = o.path("tokenizer");
            return new DataMeta(version, TokenDtype.parse(need(o, "dtype").asText()), need(o, "vocab_size").asInt(),
                    o.path("eot_id").asInt(-1),
                    need(o, "num_tokens").path("train").asLong(-1), need(o, "num_tokens").path("val").asLong(-1),
                    o.path("documents").path("train").asLong(0), o.path("documents").path("val").asLong(0),
                    o.path("bytes").path("train").asLong(0), o.path("bytes").path("val").asLong(0),
                    o.path("skipped_not_utf8").asLong(0), o.path("source").asText(""),
                    o.path("inputs_fingerprint").asText(""), o.path("settings").asText(""),
                    tok.path("trained").asBoolean(false), tok.path("sample_bytes").asLong(0), tok.path("seconds").asDouble(0),
                    o.path("created").asText(""));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(f + ": " + e.getMessage() + "; run ./dsmoe prepare again");
        }
    }

    private static JsonNode need(JsonNode o, String field) {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) throw new IllegalArgumentException("missing field " + field);
        if (field.equals("num_tokens") && (n.path("train").asLong(-1) < 0 || n.path("val").asLong(-1) < 0)) {
            throw new IllegalArgumentException("num_tokens needs non-negative train and val counts");
        }
        return n;
    }
}
