package dev.dsmoe.data;

/** How token ids are stored in a shard: little-endian uint16 when the vocabulary fits, else uint32. */
public enum TokenDtype {
    UINT16(2), UINT32(4);

    /** Bytes per token. */
    public final int bytes;

    TokenDtype(int bytes) {
        this.bytes = bytes;
    }

    /** The name used in meta.json ({@code uint16}, {@code uint32}). */
    public String jsonName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }

    /** The smallest dtype that holds ids {@code 0 .. vocabSize-1}. */
    public static TokenDtype forVocab(int vocabSize) {
        return vocabSize <= 65536 ? UINT16 : UINT32;
    }

    /** Parses a meta.json name; IllegalArgumentException for anything else. */
    public static TokenDtype parse(String s) {
        for (TokenDtype d : values()) if (d.jsonName().equals(s)) return d;
        throw new IllegalArgumentException("unknown dtype " + s + " (expected uint16 or uint32)");
    }
}
