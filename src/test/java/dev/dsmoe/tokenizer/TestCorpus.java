package dev.dsmoe.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Small synthetic corpora and adversarial strings for the tokenizer tests. */
final class TestCorpus {
    private TestCorpus() {}

    static final String[] WORDS = {"public", "static", "final", "int", "return", "value", "count", "String",
            "List", "the", "of", "and", "tokens", "merge", "pair", "Map", "get", "put", "size", "new"};

    /** Java-like documents with prose comments, deterministic in {@code seed}. */
    static List<String> documents(int n, long seed) {
        Random r = new Random(seed);
        List<String> docs = new ArrayList<>();
        for (int d = 0; d < n; d++) {
            StringBuilder sb = new StringBuilder();
            sb.append("/*\n * The ").append(WORDS[r.nextInt(WORDS.length)]).append(" of the tokens, café naïve 日本語.\n */\n");
            sb.append("public final class C").append(d).append(" {\n");
            for (int m = 0; m < 5 + r.nextInt(10); m++) {
                String a = WORDS[r.nextInt(WORDS.length)];
                String b = WORDS[r.nextInt(WORDS.length)];
                sb.append("    static int ").append(a).append('_').append(b).append("(int x) {\n");
                sb.append("        if (x > ").append(r.nextInt(10000)).append(") {\n");
                sb.append("            return x * ").append(r.nextInt(100)).append(" + ").append(a).append(".size();\n");
                sb.append("        }\n        return 0; // ").append(b).append(" isn't \"done\" 🙂\n    }\n\n");
            }
            sb.append("}\n");
            docs.add(sb.toString());
        }
        return docs;
    }

    private static final String[] PIECES = {"a", "Z", "_", "é", "e\u0301", "\u0308", "中文", "ع", "ह\u093F", "0", "42", "٣", "½",
            "Ⅻ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0000", "\u0001", "\u001f", "'s", "'t", "'",
            "😀", "👩\u200d💻", "🇫🇷", "{", "}", "();", "->", "==", "//", "/*", "\"", "\\", "<|endoftext|>", "<|", "|>",
            "\uFEFF", "\u200b", "ﬁ", "Ω", "\uD800\uDC00", "\uDBFF\uDFFF", "\u00ad", "#", "$", "€", "\u0085", "x", "Hello", "world"};

    /** A random string of tricky pieces: emoji, combining marks, NUL, whitespace runs, specials. */
    static String adversarial(Random r, int pieces) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < pieces; i++) {
            int k = r.nextInt(100);
            if (k < 3) {
                sb.append(String.valueOf(" \t\n".charAt(r.nextInt(3))).repeat(1 + r.nextInt(40)));
            } else if (k < 10) {
                int cp;
                do {
                    cp = r.nextInt(0x30000);
                } while (cp >= 0xD800 && cp <= 0xDFFF || !Character.isDefined(cp));
                sb.appendCodePoint(cp);
            } else {
                sb.append(PIECES[r.nextInt(PIECES.length)]);
            }
        }
        return sb.toString();
    }
}
