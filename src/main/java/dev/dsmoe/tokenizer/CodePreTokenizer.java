package dev.dsmoe.tokenizer;

/**
 * The pre-tokenizer of the tokenizers this project trains, made for source code and prose alike.
 * It is GPT-2's split adapted to code, hand-written (no regex in the hot path). Each pre-token is
 * the first of these that matches at the current position:
 * <ol>
 *   <li>{@code [\r\n]+[\t ]*}: line breaks with the next line's indentation, one piece, so that
 *       "newline + 4/8/12 spaces" becomes a single frequent token and indentation compresses;</li>
 *   <li>{@code ' '?[\p{L}\p{M}_]+}: a word (letters, combining marks, underscore, so {@code
 *       snake_case} and accented words in decomposed form stay whole), with one optional
 *       leading space;</li>
 *   <li>{@code ' '?\p{N}{1,3}}: up to three digits, with one optional leading space (numbers
 *       are split into groups of at most three, as in GPT-4 and Llama 3);</li>
 *   <li>{@code ' '?[^\s\p{L}\p{M}\p{N}_]+}: a run of punctuation and symbols ({@code ();},
 *       {@code ->}, {@code //}, emoji), with one optional leading space;</li>
 *   <li>{@code [^\S\r\n]+(?!\S)} then {@code [^\S\r\n]+}: other whitespace; a run followed by a
 *       word gives its last space to that word, as in GPT-2.</li>
 * </ol>
 * Unlike GPT-2 there are no English contraction rules ({@code 's}, {@code 't}): in code an
 * apostrophe is usually a char literal.
 *
 * <p>The whole split is the regex {@link #PATTERN}; the {@code tokenizer.json} we write describes
 * it as a Hugging Face {@code Split} pre-tokenizer with that pattern ({@code behavior:
 * "Isolated"}) followed by {@code ByteLevel} with {@code use_regex: false}. Hugging Face
 * tokenizers (Oniguruma) then reproduces these splits exactly, up to differences between the
 * Unicode versions of the two runtimes' character tables (which only matter for code points
 * assigned in recent Unicode versions); the test {@code CodePreTokenizerTest} checks the
 * hand-written splitter against {@link java.util.regex} running the same pattern.
 */
public final class CodePreTokenizer implements PreTokenizer {

    /** The regex this splitter implements, in the syntax of HF tokenizers' {@code Split}. */
    public static final String PATTERN =
            "[\\r\\n]+[\\t ]*| ?[\\p{L}\\p{M}_]+| ?\\p{N}{1,3}| ?[^\\s\\p{L}\\p{M}\\p{N}_]+|[^\\S\\r\\n]+(?!\\S)|[^\\S\\r\\n]+";

    /** The one instance. */
    public static final CodePreTokenizer INSTANCE = new CodePreTokenizer();

    private CodePreTokenizer() {}

    @Override
    public String pattern() {
        return PATTERN;
    }

    @Override
    public void split(String text, int from, int to, SpanSink sink) {
        PreTokenizer.scan(text, from, to, CodePreTokenizer::next, sink);
    }

    private static final byte WORD = 10, PUNCT = 11, NL = 12, HSPACE = 13;

    /** Class of a code point for this splitter: WORD, NUMBER, PUNCT, NL or HSPACE. */
    private static byte kind(int cp) {
        if (cp == '_') return WORD;
        if (cp == '\n' || cp == '\r') return NL;
        return switch (Chars.classOf(cp)) {
            case Chars.LETTER, Chars.MARK -> WORD;
            case Chars.NUMBER -> Chars.NUMBER;
            case Chars.WHITE -> HSPACE;
            default -> PUNCT;
        };
    }

    /** End (exclusive) of the pre-token that starts at {@code i}. */
    static int next(String s, int i, int end) {
        int c = s.codePointAt(i);
        byte k = kind(c);
        if (k == NL) {
            int j = i + 1;
            while (j < end && (s.charAt(j) == '\n' || s.charAt(j) == '\r')) j++;
            while (j < end && (s.charAt(j) == ' ' || s.charAt(j) == '\t')) j++;
            return j;
        }
        if (c == ' ' && i + 1 < end) {
            byte k2 = kind(s.codePointAt(i + 1));
            if (k2 != NL && k2 != HSPACE) return run(s, i + 1, end, k2);
        }
        if (k != HSPACE) return run(s, i, end, k);
        int j = i + 1;
        while (j < end) {
            char d = s.charAt(j);
            if (d == '\n' || d == '\r' || !Chars.isWhite(d)) break;
            j++;
        }
        if (j == end || s.charAt(j) == '\n' || s.charAt(j) == '\r') return j;
        return j - 1 > i ? j - 1 : j;
    }

    /** End of a run of class {@code k} (a word, up to 3 numbers, or punctuation) from {@code i}. */
    private static int run(String s, int i, int end, byte k) {
        int j = i;
        int count = 0;
        while (j < end) {
            int cp = s.codePointAt(j);
            if (kind(cp) != k) break;
            j += Character.charCount(cp);
            if (k == Chars.NUMBER && ++count == 3) break;
        }
        return j;
    }
}
