package dev.dsmoe.serve;

import dev.dsmoe.tokenizer.StreamingText;
import dev.dsmoe.tokenizer.Tokenizer;
import java.util.List;

/**
 * A completion's text as its tokens come, cut at the first stop sequence: text that might still
 * turn out to begin a stop sequence is held back until the next tokens decide it, so a stream
 * never shows part of a stop sequence.
 */
final class StopText {

    private final StreamingText decoder;
    private final List<String> stops;
    private final StringBuilder text = new StringBuilder();
    private int emitted, stopAt = -1;

    StopText(Tokenizer tok, List<String> stops) {
        this.decoder = new StreamingText(tok);
        this.stops = stops;
    }

    /** Adds a token; returns the text now safe to show (maybe empty). */
    String add(int token) {
        int before = text.length();
        text.append(decoder.add(token));
        return release(before);
    }

    /** The end: the text still held back, up to a stop sequence if one was matched. */
    String finish() {
        if (stopAt < 0) {
            int before = text.length();
            text.append(decoder.finish());
            findStop(before);
        }
        int end = stopAt >= 0 ? stopAt : text.length();
        String rest = end > emitted ? text.substring(emitted, end) : "";
        emitted = Math.max(emitted, end);
        return rest;
    }

    /** Whether a stop sequence has been matched (the request should end). */
    boolean stopped() {
        return stopAt >= 0;
    }

    private String release(int before) {
        if (stopAt >= 0) return "";
        findStop(before);
        int end;
        if (stopAt >= 0) {
            end = stopAt;
        } else {
            end = text.length() - heldBack();
        }
        if (end <= emitted) return "";
        String out = text.substring(emitted, end);
        emitted = end;
        return out;
    }

    private void findStop(int before) {
        for (String s : stops) {
            int i = text.indexOf(s, Math.max(0, before - s.length() + 1));
            if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
        }
    }

    private boolean endsWithPrefix(int n, String s, int k) {
        for (int i = 0; i < k; i++) if (text.charAt(n - k + i) != s.charAt(i)) return false;
        return true;
    }

    /** The longest end of the text that is the beginning of a stop sequence. */
    private int heldBack() {
        int most = 0, n = text.length();
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, n - emitted); k > most; k--) {
                if (endsWithPrefix(n, s, k)) {
                    most = k;
                    break;
                }
            }
        }
        return most;
    }
}
