package dev.dsmoe.tokenizer;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Turns a growing token list into text a piece at a time: byte-level BPE tokens can end in the
 * middle of a UTF-8 character, so a streaming decoder keeps the bytes of an incomplete
 * character until the tokens that complete it come. Each token's bytes are decoded once,
 * so a long completion costs the same per token as a short one.
 */
public final class StreamingText {
    private final Tokenizer tok;
    // the JDK's UTF-8 decoder in streaming mode: what new String(bytes, UTF_8) gives for the whole, a piece at a time
    private final CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPLACE).onUnmappableCharacter(CodingErrorAction.REPLACE);
    private ByteBuffer pending = ByteBuffer.allocate(64); // bytes not yet decoded, in write mode
    private CharBuffer chars = CharBuffer.allocate(64);
    private final StringBuilder text = new StringBuilder();
    private int before; // the text's length before the last add
    private long bytesDecoded;

    public StreamingText(Tokenizer tok) {
        this.tok = tok;
    }

    /** Adds a token; returns the text it completes (empty while a character is incomplete). */
    public String add(int token) {
        if (!tok.canDecode(token)) throw new IllegalArgumentException("token id " + token + " is not in the tokenizer's vocabulary");
        byte[] b = tok.tokenBytes(token);
        if (pending.remaining() < b.length) {
            pending = ByteBuffer.allocate(pending.position() + b.length + 64).put(pending.flip());
        }
        pending.put(b);
        return decode(false);
    }

    /** The text of an incomplete character left at the end (U+FFFD, as a one-shot decode gives it). */
    public String finish() {
        return decode(true);
    }

    private String decode(boolean end) {
        before = text.length();
        pending.flip();
        bytesDecoded += pending.remaining();
        while (utf8.decode(pending, chars, end).isOverflow()) {
            chars = CharBuffer.allocate(chars.capacity() * 2).put(chars.flip());
        }
        if (end) {
            while (utf8.flush(chars).isOverflow()) chars = CharBuffer.allocate(chars.capacity() * 2).put(chars.flip());
            utf8.reset();
        }
        bytesDecoded -= pending.remaining(); // an incomplete character's bytes are decoded when it completes
        pending.compact();
        chars.flip();
        String fresh = chars.toString();
        chars.clear();
        text.append(fresh);
        return fresh;
    }

    /**
     * Whether {@code s} occurs in the text and the last add completed it: only the last add's
     * text and the {@code s.length() - 1} characters before it are searched.
     */
    public boolean lastAddCompleted(String s) {
        return text.indexOf(s, Math.max(0, before - s.length() + 1)) >= 0;
    }

    /** The text released so far. */
    public String text() {
        return text.toString();
    }

    /** Bytes the UTF-8 decoder has consumed so far: each token's bytes once, however long the text. */
    public long bytesDecoded() {
        return bytesDecoded;
    }
}
