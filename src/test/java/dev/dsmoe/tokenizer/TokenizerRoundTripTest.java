package dev.dsmoe.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Property: decode(encode(s)) == s for every valid UTF-8 string. */
class TokenizerRoundTripTest {
    static Tokenizer tok;

    @BeforeAll
    static void train() {
        // train on code plus adversarial text, so merges exist across emoji, marks and whitespace
        java.util.List<String> docs = new java.util.ArrayList<>(TestCorpus.documents(30, 5));
        Random r = new Random(5);
        for (int i = 0; i < 30; i++) docs.add(TestCorpus.adversarial(r, 300));
        tok = BpeTrainer.train(docs, 1200, null);
    }

    @Test
    void decodeOfEncodeIsIdentityOnRandomAndAdversarialStrings() {
        Random r = new Random(42);
        for (int i = 0; i < 3000; i++) {
            String s = TestCorpus.adversarial(r, r.nextInt(60));
            assertEquals(s, tok.decode(tok.encode(s)), () -> CodePreTokenizerTest.escape(s));
            assertEquals(s, tok.decode(tok.encodeOrdinary(s)), () -> CodePreTokenizerTest.escape(s));
        }
    }

    @Test
    void decodeOfEncodeIsIdentityOnRandomCodePoints() {
        Random r = new Random(43);
        for (int i = 0; i < 1000; i++) {
            StringBuilder sb = new StringBuilder();
            for (int k = r.nextInt(40); k > 0; k--) {
                int cp = r.nextInt(0x110000);
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
                sb.appendCodePoint(cp);
            }
            String s = sb.toString();
            assertEquals(s, tok.decode(tok.encode(s)));
        }
    }

    @Test
    void veryLongLinesAndRunsRoundTrip() {
        String[] cases = {"a".repeat(200_000), " ".repeat(50_000) + "x", "\n".repeat(10_000), "=".repeat(100_000),
                "😀".repeat(30_000), "e\u0301".repeat(20_000), "\u0000".repeat(5000), "ab".repeat(100_000),
                "return x;".repeat(20_000)};
        for (String s : cases) {
            int[] ids = tok.encodeOrdinary(s);
            assertEquals(s, tok.decode(ids));
        }
    }

    @Test
    void longPiecesMergeExactlyLikeShortOnes() {
        // the heap path (long pieces) and the scan path (short pieces) must agree
        Random r = new Random(44);
        for (int i = 0; i < 200; i++) {
            StringBuilder sb = new StringBuilder();
            for (int k = 0; k < 20 + r.nextInt(200); k++) sb.append(TestCorpus.WORDS[r.nextInt(TestCorpus.WORDS.length)].charAt(r.nextInt(2)));
            String word = sb.toString();
            byte[] b = word.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            int[] viaTokenizer = tok.bpe(b);
            int[] viaScan = scanMerge(tok, b);
            assertArrayEquals(viaScan, viaTokenizer, word);
        }
    }

    /** Reference BPE: repeatedly merge the lowest-ranked pair, leftmost first, on a plain list. */
    static int[] scanMerge(Tokenizer t, byte[] bytes) {
        java.util.List<Integer> s = new java.util.ArrayList<>();
        for (byte b : bytes) s.add(b & 0xff);
        while (true) {
            int best = Integer.MAX_VALUE;
            int pos = -1;
            for (int k = 0; k + 1 < s.size(); k++) {
                for (int rnk = 0; rnk < Math.min(best, t.mergeCount()); rnk++) {
                    int[] m = t.merge(rnk);
                    if (m[0] == s.get(k) && m[1] == s.get(k + 1)) {
                        best = rnk;
                        pos = k;
                        break;
                    }
                }
            }
            if (pos < 0) break;
            s.set(pos, t.merge(best)[2]);
            s.remove(pos + 1);
        }
        return s.stream().mapToInt(Integer::intValue).toArray();
    }

    @Test
    void endOfTextIsSpecialInEncodeAndOrdinaryInEncodeOrdinary() {
        int eot = tok.endOfTextId();
        int[] ids = tok.encode("a<|endoftext|>b");
        assertEquals(3, ids.length);
        assertEquals(eot, ids[1]);
        for (int id : tok.encodeOrdinary("a<|endoftext|>b")) assertTrue(id != eot);
    }
}
