package dev.dsmoe.tokenizer;

/**
 * Unicode character classes used by the pre-tokenizers, with an ASCII fast path. They follow
 * the regex classes of the patterns the pre-tokenizers implement: {@code \s} is the Unicode
 * White_Space property (as in Oniguruma, which Hugging Face tokenizers uses, and in Java with
 * {@code UNICODE_CHARACTER_CLASS}), {@code \p{L}}, {@code \p{M}}, {@code \p{N}} are general
 * categories as the running JDK's Unicode tables define them.
 */
final class Chars {
    static final byte WHITE = 0, LETTER = 1, NUMBER = 2, MARK = 3, OTHER = 4;
    private static final byte[] ASCII = new byte[128];

    static {
        for (int c = 0; c < 128; c++) ASCII[c] = slowClass(c);
    }

    private Chars() {}

    /** The class of code point {@code cp}: WHITE, LETTER, NUMBER, MARK or OTHER. */
    static byte classOf(int cp) {
        return cp < 128 ? ASCII[cp] : slowClass(cp);
    }

    private static byte slowClass(int cp) {
        if (isWhite(cp)) return WHITE;
        switch (Character.getType(cp)) {
            case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER,
                 Character.MODIFIER_LETTER, Character.OTHER_LETTER -> {
                return LETTER;
            }
            case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER -> {
                return NUMBER;
            }
            case Character.NON_SPACING_MARK, Character.ENCLOSING_MARK, Character.COMBINING_SPACING_MARK -> {
                return MARK;
            }
            default -> {
                return OTHER;
            }
        }
    }

    /** Unicode White_Space (what {@code \s} means in Oniguruma and in Java's Unicode mode). */
    static boolean isWhite(int cp) {
        if (cp < 128) return cp == ' ' || (cp >= 0x09 && cp <= 0x0d);
        return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a)
                || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
    }

    /** {@code s} for a one-line message: control characters escaped, cut after 200 characters. */
    static String printable(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length() && b.length() <= 200; i++) {
            char c = s.charAt(i);
            if (c == '\n') b.append("\\n");
            else if (c == '\r') b.append("\\r");
            else if (Character.isISOControl(c) || c == 0x2028 || c == 0x2029) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.length() <= 200 ? b.toString() : b.substring(0, 200) + "...";
    }
}
