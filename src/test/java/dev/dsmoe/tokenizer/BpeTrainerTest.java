package dev.dsmoe.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.Parallel;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

class BpeTrainerTest {

    @Test
    void trainingIsDeterministicWhateverTheThreadCount() {
        List<String> docs = TestCorpus.documents(40, 11);
        int before = Parallel.threads();
        try {
            Parallel.setThreads(1);
            String one = BpeTrainer.train(docs, 600, null).toJson();
            Parallel.setThreads(2);
            String two = BpeTrainer.train(docs, 600, null).toJson();
            String again = BpeTrainer.train(docs, 600, null).toJson();
            assertEquals(one, two);
            assertEquals(two, again);
        } finally {
            Parallel.setThreads(before);
        }
    }

    @Test
    void mergesReduceTheTokenCount() {
        List<String> docs = TestCorpus.documents(40, 12);
        Tokenizer small = BpeTrainer.train(docs, 300, null);
        Tokenizer large = BpeTrainer.train(docs, 1000, null);
        String held = TestCorpus.documents(3, 99).get(2);
        int bytes = held.getBytes(StandardCharsets.UTF_8).length;
        int nSmall = small.encodeOrdinary(held).length;
        int nLarge = large.encodeOrdinary(held).length;
        assertTrue(nSmall < bytes, nSmall + " tokens for " + bytes + " bytes");
        assertTrue(nLarge < nSmall * 0.8, "1000 ids gave " + nLarge + " tokens, 300 ids gave " + nSmall);
        assertTrue(bytes / (double) nLarge > 2.5, "bytes per token " + bytes / (double) nLarge);
    }

    @Test
    void vocabularyHasBytesMergesAndEndOfTextLast() {
        Tokenizer t = BpeTrainer.train(TestCorpus.documents(20, 13), 500, null);
        assertEquals(500, t.vocabSize());
        assertEquals(499, t.endOfTextId());
        assertEquals("<|endoftext|>", t.tokenString(499));
        for (int b = 0; b < 256; b++) assertEquals(b, t.tokenBytes(b)[0] & 0xff);
        assertEquals("Ġ", t.tokenString(' '));
    }

    @Test
    void smallCorpusStopsWhenPairsRunOut() {
        Tokenizer t = BpeTrainer.train(List.of("abab"), 1000, null);
        assertTrue(t.vocabSize() < 270, "vocab " + t.vocabSize());
        assertEquals(1, t.encodeOrdinary("abab").length);
    }

    @Test
    void tooSmallVocabularyIsRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> BpeTrainer.train(List.of("x"), 100, null));
        assertTrue(e.getMessage().contains("--vocab-size"), e.getMessage());
    }
}
