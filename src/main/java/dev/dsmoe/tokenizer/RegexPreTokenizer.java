package dev.dsmoe.tokenizer;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A Hugging Face {@code Split} pre-tokenizer with an arbitrary regex (behavior "Isolated": the
 * matches and the text between them are pieces), run with {@link java.util.regex} in Unicode
 * mode. Used only for tokenizer.json files whose pattern is neither ours nor GPT-2's (e.g. Llama 3);
 * slower than the hand-written splitters.
 *
 * <p>The pattern comes from a file that may not be trusted, and a backtracking matcher can take
 * exponential time, e.g. {@code ((a+)+)+$} on a run of a's (Java memoizes simple loops, so
 * {@code (a+)+$} stays polynomial). So every split runs under a step budget linear in the text's
 * length: the matcher reads the text through a wrapper that counts {@code charAt} calls and
 * stops it with one line naming the pattern, instead of hanging. Reading the file also runs an
 * unknown pattern on short probe texts ({@link #probe}), so the usual blow-ups are refused
 * before a model is loaded.
 */
public final class RegexPreTokenizer implements PreTokenizer {

    /** Llama 3's split pattern, as its tokenizer.json writes it. */
    public static final String LLAMA3_PATTERN =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    /**
     * Text reads allowed per character of the split range, plus {@link #BASE_STEPS}. The known
     * patterns (GPT-2's, ours, Llama 3's) measure at most 6 per character on code, prose and long
     * runs of spaces, newlines, digits or punctuation; an exponential pattern such as
     * {@code ((a+)+)+$} exceeds the budget within about 20 characters.
     */
    static final long STEPS_PER_CHAR = 1_000;
    static final long BASE_STEPS = 100_000;

    private final String pattern;
    private final String source;
    private final Pattern compiled;

    /** Compiles {@code pattern}; throws IllegalArgumentException when Java cannot. */
    public RegexPreTokenizer(String pattern) {
        this(pattern, "pre-tokenizer");
    }

    /**
     * Compiles {@code pattern}; {@code source} (e.g. the tokenizer.json's path) starts the error
     * a split gives when the pattern runs out of steps.
     */
    public RegexPreTokenizer(String pattern, String source) {
        this.pattern = pattern;
        this.source = source;
        try {
            this.compiled = Pattern.compile(pattern, Pattern.UNICODE_CHARACTER_CLASS);
        } catch (java.util.regex.PatternSyntaxException e) {
            throw new IllegalArgumentException("unsupported Split regex " + Chars.printable(pattern) + ": " + e.getDescription());
        }
    }

    /**
     * Runs the pattern on short probe texts within its step budget: null when it does, else the
     * problem (without {@code source}). The known patterns are not probed.
     */
    String probe() {
        if (pattern.equals(LLAMA3_PATTERN)) return null;
        // Runs of one kind of character, then a different one: where nested quantifiers backtrack.
        String[] units = {"a", "1", " ", "\n", "\t", ".", "'", "é", "a ", "a1", "a.", " \n", "ab"};
        String[] ends = {"!", "a", " ", "\n", "1"};
        for (String u : units) {
            for (String end : ends) {
                String probe = u.repeat(48 / u.length()) + end;
                try {
                    splitWithinBudget(probe, 0, probe.length(), (s, e) -> {});
                } catch (OutOfSteps | StackOverflowError e) {
                    return overrun(probe.length(), e);
                }
            }
        }
        return null;
    }

    @Override
    public String pattern() {
        return pattern;
    }

    @Override
    public void split(String text, int from, int to, SpanSink sink) {
        try {
            splitWithinBudget(text, from, to, sink);
        } catch (OutOfSteps | StackOverflowError e) {
            throw new IllegalArgumentException(source + ": " + overrun(to - from, e));
        }
    }

    private void splitWithinBudget(String text, int from, int to, SpanSink sink) {
        Matcher m = compiled.matcher(new Budgeted(text, BASE_STEPS + STEPS_PER_CHAR * (to - from)));
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

    private String overrun(int chars, Throwable e) {
        String why = e instanceof StackOverflowError
                ? "ran out of stack on a text of " + chars + " characters (a repeated group recurses once per repetition)"
                : "took over " + STEPS_PER_CHAR + " steps per character on a text of " + chars + " characters (catastrophic backtracking)";
        return "pre-tokenizer regex " + Chars.printable(pattern) + " " + why + "; use a pattern that runs in linear time, such as GPT-2's or Llama 3's";
    }

    /** Thrown by {@link Budgeted} when the matcher has read the text too often; no stack trace. */
    private static final class OutOfSteps extends RuntimeException {
        OutOfSteps() {
            super(null, null, false, false);
        }
    }

    /** The text as the matcher sees it, counting reads: every step of the matcher reads it. */
    private static final class Budgeted implements CharSequence {
        private final String s;
        private long left;

        Budgeted(String s, long steps) {
            this.s = s;
            this.left = steps;
        }

        @Override
        public char charAt(int i) {
            if (--left < 0) throw new OutOfSteps();
            return s.charAt(i);
        }

        @Override
        public int length() {
            return s.length();
        }

        @Override
        public CharSequence subSequence(int start, int end) {
            return s.subSequence(start, end);
        }

        @Override
        public String toString() {
            return s;
        }
    }
}
