package dev.dsmoe.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class CodePreTokenizerTest {

    static List<String> regexPieces(String pattern, String text) {
        Matcher m = Pattern.compile(pattern, Pattern.UNICODE_CHARACTER_CLASS).matcher(text);
        List<String> out = new ArrayList<>();
        int last = 0;
        while (m.find()) {
            if (m.start() > last) out.add(text.substring(last, m.start()));
            out.add(m.group());
            last = m.end();
        }
        if (last < text.length()) out.add(text.substring(last));
        return out;
    }

    @Test
    void splitsCodeAsDocumented() {
        String code = "    return my_value + 12345;\n        }\n\n  x  = 'a' ->  \"caf\u00e9\"  \n";
        assertEquals(List.of("   ", " return", " my_value", " +", " 123", "45", ";", "\n        ", "}", "\n\n  ",
                "x", " ", " =", " '", "a", "'", " ->", " ", " \"", "caf\u00e9", "\"", "  ", "\n"),
                CodePreTokenizer.INSTANCE.pieces(code));
    }

    @Test
    void handWrittenSplitMatchesItsRegexOnRandomText() {
        Random r = new Random(1);
        for (int i = 0; i < 2000; i++) {
            String s = TestCorpus.adversarial(r, 1 + r.nextInt(30));
            assertEquals(regexPieces(CodePreTokenizer.PATTERN, s), CodePreTokenizer.INSTANCE.pieces(s), () -> "text: " + escape(s));
        }
        for (String doc : TestCorpus.documents(5, 2)) {
            assertEquals(regexPieces(CodePreTokenizer.PATTERN, doc), CodePreTokenizer.INSTANCE.pieces(doc));
        }
    }

    @Test
    void splitIsDeterministicAndCoversTheText() {
        Random r = new Random(3);
        for (int i = 0; i < 200; i++) {
            String s = TestCorpus.adversarial(r, 50);
            List<String> a = CodePreTokenizer.INSTANCE.pieces(s);
            assertEquals(a, CodePreTokenizer.INSTANCE.pieces(s));
            assertEquals(s, String.join("", a));
        }
    }

    static String escape(String s) {
        StringBuilder sb = new StringBuilder();
        s.codePoints().forEach(cp -> {
            if (cp >= 32 && cp < 127) sb.appendCodePoint(cp);
            else sb.append(String.format("\\u{%x}", cp));
        });
        return sb.toString();
    }
}
