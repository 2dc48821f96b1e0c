package dev.dsmoe.tokenizer;

/**
 * GPT-2's pre-tokenizer, hand-written: the split Hugging Face's {@code ByteLevel} pre-tokenizer
 * does with {@code use_regex: true}, i.e. the regex {@link #PATTERN}
 * ({@code 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+}),
 * with {@code \s} the Unicode White_Space property as in Oniguruma.
 */
public final class Gpt2PreTokenizer implements PreTokenizer {

    /** GPT-2's pattern. */
    public static final String PATTERN =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

    /** The one instance. */
    public static final Gpt2PreTokenizer INSTANCE = new Gpt2PreTokenizer();

    private Gpt2PreTokenizer() {}

    @Override
    public String pattern() {
        return PATTERN;
    }

    @Override
    public void split(String text, int from, int to, SpanSink sink) {
        PreTokenizer.scan(text, from, to, Gpt2PreTokenizer::next, sink);
    }

    /** Letters, numbers, white, or other (marks count as other in GPT-2's pattern). */
    private static byte kind(int cp) {
        byte c = Chars.classOf(cp);
        return c == Chars.MARK ? Chars.OTHER : c;
    }

    static int next(String s, int i, int end) {
        char c = s.charAt(i);
        if (c == '\'' && i + 1 < end) {
            char d = s.charAt(i + 1);
            if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
            if (i + 2 < end) {
                char e = s.charAt(i + 2);
                if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return i + 3;
            }
        }
        if (c == ' ' && i + 1 < end) {
            byte k2 = kind(s.codePointAt(i + 1));
            if (k2 != Chars.WHITE) return run(s, i + 1, end, k2);
        }
        int cp = s.codePointAt(i);
        byte k = kind(cp);
        if (k != Chars.WHITE) return run(s, i, end, k);
        int j = i + 1;
        while (j < end && Chars.isWhite(s.charAt(j))) j++;
        if (j == end) return j;
        return j - 1 > i ? j - 1 : j;
    }

    private static int run(String s, int i, int end, byte k) {
        int j = i;
        while (j < end) {
            int cp = s.codePointAt(j);
            if (kind(cp) != k) break;
            j += Character.charCount(cp);
        }
        return j;
    }
}
