package dev.dsmoe.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class Gpt2PreTokenizerTest {

    @Test
    void splitsLikeGpt2() {
        assertEquals(List.of("Hello", " world", "'s", " 2024", "!!", "\n", "\n", "ok", "  \n\n"),
                Gpt2PreTokenizer.INSTANCE.pieces("Hello world's 2024!!\n\nok  \n\n"));
        assertEquals(List.of("I", "'ll", " don", "'t", "  ", " x", " ''", "s"),
                Gpt2PreTokenizer.INSTANCE.pieces("I'll don't   x ''s"));
    }

    @Test
    void handWrittenSplitMatchesGpt2RegexOnRandomText() {
        Random r = new Random(7);
        for (int i = 0; i < 2000; i++) {
            String s = TestCorpus.adversarial(r, 1 + r.nextInt(30));
            assertEquals(CodePreTokenizerTest.regexPieces(Gpt2PreTokenizer.PATTERN, s), Gpt2PreTokenizer.INSTANCE.pieces(s),
                    () -> "text: " + CodePreTokenizerTest.escape(s));
        }
    }
}
