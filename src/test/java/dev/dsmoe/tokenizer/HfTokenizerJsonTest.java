package dev.dsmoe.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HfTokenizerJsonTest {

    /**
     * A GPT-2-style tokenizer.json written by hand: ByteLevel pre-tokenizer with use_regex, a tiny
     * byte-level vocab, 15 merges, and <|endoftext|> as an added token that is also in the vocab.
     */
    static final String GPT2_STYLE = """
            {
              "version": "1.0",
              "truncation": null,
              "padding": null,
              "added_tokens": [
                {"id": 31, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false,
                 "normalized": true, "special": true}
              ],
              "normalizer": null,
              "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
              "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
              "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
              "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                "vocab": {"!": 0, "'": 1, "H": 2, "e": 3, "l": 4, "o": 5, "w": 6, "r": 7, "d": 8, "s": 9,
                          "Ġ": 10, "Ċ": 11, "2": 12, "0": 13, "4": 14, "k": 15,
                          "ll": 16, "He": 17, "Hell": 18, "Hello": 19, "Ġw": 20, "or": 21, "Ġwor": 22,
                          "Ġworl": 23, "Ġworld": 24, "'s": 25, "Ġ2": 26, "02": 27, "!!": 28, "ĊĊ": 29, "ok": 30,
                          "<|endoftext|>": 31},
                "merges": ["l l", "H e", "He ll", "Hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "' s",
                           "Ġ 2", "0 2", "! !", "Ċ Ċ", "o k"]
              }
            }
            """;

    @Test
    void gpt2StyleFileEncodesKnownStringsToExpectedIds() {
        Tokenizer t = Tokenizer.fromJson(GPT2_STYLE, "gpt2-style.json");
        assertEquals(32, t.vocabSize());
        assertEquals(31, t.endOfTextId());
        // pieces: Hello | " world" | 's | " 2024" | !! | \n | \n | ok | <|endoftext|> | Hello
        assertArrayEquals(new int[] {19, 24, 25, 26, 27, 14, 28, 11, 11, 30, 31, 19},
                t.encode("Hello world's 2024!!\n\nok<|endoftext|>Hello"));
        // trailing whitespace is one piece, so the \n\n merge applies there
        assertArrayEquals(new int[] {30, 10, 10, 29}, t.encode("ok  \n\n"));
        assertEquals("Hello world's 2024!!\n\nok<|endoftext|>Hello", t.decode(t.encode("Hello world's 2024!!\n\nok<|endoftext|>Hello")));
    }

    @Test
    void gpt2StyleMergesAsArraysReadTheSame() {
        String arrays = GPT2_STYLE.replaceAll("\"([^\" ]+) ([^\" ]+)\"(?=[,\\]])", "[\"$1\", \"$2\"]");
        assertTrue(arrays.contains("[\"l\", \"l\"]"));
        Tokenizer t = Tokenizer.fromJson(arrays, "arrays.json");
        assertArrayEquals(Tokenizer.fromJson(GPT2_STYLE, "x").encode("Hello world's 2024"), t.encode("Hello world's 2024"));
    }

    @Test
    void writeThenReadGivesIdenticalEncodings(@TempDir Path dir) throws Exception {
        Tokenizer t = BpeTrainer.train(TestCorpus.documents(30, 21), 800, null);
        Path f = dir.resolve("tokenizer.json");
        t.save(f);
        Tokenizer back = Tokenizer.load(f);
        assertEquals(t.vocabSize(), back.vocabSize());
        assertEquals(t.endOfTextId(), back.endOfTextId());
        assertEquals(t.toJson(), back.toJson());
        Random r = new Random(8);
        for (String doc : TestCorpus.documents(10, 22)) assertArrayEquals(t.encode(doc), back.encode(doc));
        for (int i = 0; i < 500; i++) {
            String s = TestCorpus.adversarial(r, 40);
            assertArrayEquals(t.encode(s), back.encode(s));
        }
    }

    @Test
    void writtenFileHasTheHuggingFaceLayout() throws Exception {
        Tokenizer t = BpeTrainer.train(TestCorpus.documents(10, 23), 400, null);
        JsonNode root = new ObjectMapper().readTree(t.toJson());
        assertEquals("BPE", root.at("/model/type").asText());
        assertEquals(400, root.at("/model/vocab").size());
        assertEquals(400 - 257, root.at("/model/merges").size());
        assertEquals(399, root.at("/model/vocab/<|endoftext|>").asInt());
        assertEquals(32, root.at("/model/vocab/Ġ").asInt());
        assertEquals("Sequence", root.at("/pre_tokenizer/type").asText());
        assertEquals("Split", root.at("/pre_tokenizer/pretokenizers/0/type").asText());
        assertEquals(CodePreTokenizer.PATTERN, root.at("/pre_tokenizer/pretokenizers/0/pattern/Regex").asText());
        assertEquals("Isolated", root.at("/pre_tokenizer/pretokenizers/0/behavior").asText());
        assertEquals("ByteLevel", root.at("/pre_tokenizer/pretokenizers/1/type").asText());
        assertFalse(root.at("/pre_tokenizer/pretokenizers/1/use_regex").asBoolean());
        assertEquals("ByteLevel", root.at("/decoder/type").asText());
        assertEquals("<|endoftext|>", root.at("/added_tokens/0/content").asText());
        assertTrue(root.at("/added_tokens/0/special").asBoolean());
        assertTrue(root.at("/model/merges/0").isTextual());
    }

    @Test
    void otherSplitRegexesRunThroughJavaRegex() {
        String llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        String json = GPT2_STYLE.replace(
                "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}",
                "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                        + new ObjectMapper().valueToTree(llama3) + "}, \"behavior\": \"Isolated\", \"invert\": false},"
                        + " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}");
        Tokenizer t = Tokenizer.fromJson(json, "llama3-style.json");
        assertEquals(java.util.List.of("Hello", " world", "'s", " ", "202", "4", "!!\n\n", "ok"),
                t.preTokens("Hello world's 2024!!\n\nok"));
        assertEquals("Hello world's 2024!!\n\nok", t.decode(t.encode("Hello world's 2024!!\n\nok")));
    }

    @Test
    void corruptFilesGiveOneLineNamingTheFile(@TempDir Path dir) throws Exception {
        String[] bad = {
            "{ not json",
            "[]",
            "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
            GPT2_STYLE.replace("\"Ġworld\": 24,", ""),
            GPT2_STYLE.replace("\"merges\": [\"l l\"", "\"merges\": [\"ll\""),
            GPT2_STYLE.replace("\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}"),
            GPT2_STYLE.replace("\"type\": \"ByteLevel\", \"add_prefix_space\": false", "\"type\": \"Whitespace\", \"add_prefix_space\": false"),
            GPT2_STYLE.replace("\"H\": 2,", "\"H\": \"two\","),
            "",
        };
        for (int i = 0; i < bad.length; i++) {
            Path f = dir.resolve("tok" + i + ".json");
            Files.writeString(f, bad[i]);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.load(f), bad[i]);
            assertTrue(e.getMessage().startsWith(f.toString() + ": not a usable tokenizer.json"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class, () -> Tokenizer.load(dir.resolve("nope.json")));
        assertTrue(missing.getMessage().contains("no such file"), missing.getMessage());
    }

    /** {@link #GPT2_STYLE} with its pre-tokenizer a Split of {@code regex} before ByteLevel. */
    static String withSplit(String regex) {
        return GPT2_STYLE.replace(
                "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}",
                "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                        + new ObjectMapper().valueToTree(regex) + "}, \"behavior\": \"Isolated\", \"invert\": false},"
                        + " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}");
    }

    private static void assertRefused(String json, String expected) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.fromJson(json, "t.json"));
        assertTrue(e.getMessage().startsWith("t.json: not a usable tokenizer.json: " + expected), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void idsWithoutAModelStayBelowAFixedCap() {
        // a vocabulary of Llama 3's size (ids up to 128,255) is fine
        assertEquals(128_256, Tokenizer.fromJson(GPT2_STYLE.replace("\"ok\": 30,", "\"ok\": 128255,"), "t.json").vocabSize());
        // 5 M would have sized a 5 M-entry table for a 2 KB file (ids up to 2^26 were accepted)
        assertRefused(GPT2_STYLE.replace("\"ok\": 30,", "\"ok\": 5000000,"), "vocab entry ok has id 5000000, not below the limit of 1048576 ids");
        assertRefused(GPT2_STYLE.replace("{\"id\": 31,", "{\"id\": 5000000,"), "added token <|endoftext|> has id 5000000, not below the limit");
        assertRefused(GPT2_STYLE.replace("\"ok\": 30,", "\"ok\": 18446744073709551646,"), "vocab entry ok has id 18446744073709551646, not below");
        assertRefused(GPT2_STYLE.replace("{\"id\": 31,", "{\"id\": 18446744073709551647,"), "added token <|endoftext|> has id 18446744073709551647, not below");
    }

    @Test
    void idsWithAModelStayBelowItsVocabSize() {
        assertEquals(32, Tokenizer.fromJson(GPT2_STYLE, "t.json", 32).vocabSize());
        assertEquals(32, Tokenizer.fromJson(GPT2_STYLE, "t.json", 50).vocabSize());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.fromJson(GPT2_STYLE, "t.json", 31));
        assertTrue(e.getMessage().startsWith("t.json: not a usable tokenizer.json: "), e.getMessage());
        assertTrue(e.getMessage().contains("has id 31, not below the model's vocab_size 31"), e.getMessage());
    }

    @Test
    void mergesMustNameVocabTokensWhoseBytesJoin() {
        assertRefused(GPT2_STYLE.replace("\"o k\"]", "\"o q\"]"), "merge 15 (o q) uses a token missing from the vocab");
        assertRefused(GPT2_STYLE.replace("\"ok\": 30,", ""), "merge 15 (o k) uses a token missing from the vocab");
        // "Ġ" is byte-level spelling (a space), "▁" is not (its UTF-8 bytes), so "Ġ▁" is not the two joined
        assertRefused(GPT2_STYLE.replace("\"ok\": 30,", "\"ok\": 30, \"▁\": 32, \"Ġ▁\": 33,").replace("\"o k\"]", "\"o k\", \"Ġ ▁\"]"),
                "merge 16 (Ġ ▁) gives token 33, whose bytes are not the two parts' bytes joined");
    }

    @Test
    void anAddedTokenMayNotTakeAnotherTokensId() {
        // "Hello" (19) would encode to id 19 and decode as <|endoftext|>
        assertRefused(GPT2_STYLE.replace("{\"id\": 31,", "{\"id\": 19,"), "added token <|endoftext|> has id 19, which the vocab gives to Hello");
    }

    @Test
    void aBacktrackingSplitRegexIsRefusedOrStoppedNeverHangs() {
        assertTimeoutPreemptively(Duration.ofSeconds(30), () -> {
            assertRefused(withSplit("((a+)+)+$"), "pre-tokenizer regex ((a+)+)+$ took over 1000 steps per character");
            Tokenizer t = Tokenizer.fromJson(withSplit("((x+)+)+y"), "t.json"); // its probes have no x
            assertEquals(java.util.List.of("ab", "xy"), t.preTokens("abxy"));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.encode("x".repeat(40)));
            assertTrue(e.getMessage().startsWith("t.json: pre-tokenizer regex ((x+)+)+y took over 1000 steps per character on a text of 40"),
                    e.getMessage());
            // deep recursion is stopped the same way, not an internal error
            Tokenizer deep = Tokenizer.fromJson(withSplit("(?:x|y)+z"), "t.json");
            e = assertThrows(IllegalArgumentException.class, () -> deep.encode("xy".repeat(200_000)));
            assertTrue(e.getMessage().startsWith("t.json: pre-tokenizer regex (?:x|y)+z ran out of stack"), e.getMessage());
        });
    }

    @Test
    void theKnownPatternsRunFarWithinTheBudget() {
        String text = String.join("", TestCorpus.documents(20, 5)) + " ".repeat(20_000) + "\n".repeat(20_000) + "!?".repeat(10_000)
                + "1".repeat(20_000) + "x ".repeat(10_000) + "\t \r\n".repeat(5_000);
        for (String p : new String[] {RegexPreTokenizer.LLAMA3_PATTERN, CodePreTokenizer.PATTERN, Gpt2PreTokenizer.PATTERN}) {
            assertEquals(text, String.join("", new RegexPreTokenizer(p).pieces(text)), p);
        }
    }
}
