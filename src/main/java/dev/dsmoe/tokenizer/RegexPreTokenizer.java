package dev.dsmoe.tokenizer;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A Hugging Face {@code Split} pre-tokenizer with an arbitrary regex (behavior "Isolated": the
 * matches and the text between them are pieces), run with {@link java.util.regex} in Unicode
 * mode. Used only for tokenizer.json files whose pattern is neither ours nor GPT-2's (e.g. Llama 3);
 * slower than the hand-written splitters.
 */
public final class RegexPreTokenizer implements PreTokenizer {
    private final String pattern;
    private final Pattern compiled;

    /** Compiles {@code pattern}; throws IllegalArgumentException when Java cannot. */
    public RegexPreTokenizer(String pattern) {
        this.pattern = pattern;
        try {
            this.compiled = Pattern.compile(pattern, Pattern.UNICODE_CHARACTER_CLASS);
        } catch (java.util.regex.PatternSyntaxException e) {
            throw new IllegalArgumentException("unsupported Split regex " + pattern + ": " + e.getDescription());
        }
    }

    @Override
    public String pattern() {
        return pattern;
    }

    @Override
    public void split(String text, int from, int to, SpanSink sink) {
        Matcher m = compiled.matcher(text);
        m.region(from, to);
        int last = from;
        while (m.find()) {
            if (m.end() == m.start()) continue;
            if (m.start() > last) sink.accept(last, m.start());
            sink.accept(m.start(), m.end());
            last = m.end();
        }
        if (last < to) sink.accept(last, to);
    }
}
