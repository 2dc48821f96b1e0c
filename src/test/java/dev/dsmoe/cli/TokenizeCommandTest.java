package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ./dsmoe tokenize}: encode, decode back, and bad input. */
class TokenizeCommandTest {

    @TempDir
    static Path dir;
    static Path tokenizer;

    @BeforeAll
    static void prepare() throws Exception {
        tokenizer = TrainCommandTest.prepareData(dir).resolve("tokenizer.json");
    }

    @Test
    void encodesAndDecodesBack() throws Exception {
        String text = "class F1 {\n    int x = 1; // é 😀\n}<|endoftext|>";
        Path in = Files.writeString(dir.resolve("in.txt"), text);
        PrepareCommandTest.Run enc = PrepareCommandTest.run("tokenize", "--tokenizer", tokenizer.toString(), "--input", in.toString());
        assertEquals(0, enc.status(), enc.err());
        PrepareCommandTest.Run dec = PrepareCommandTest.run("tokenize", "--tokenizer", tokenizer.toString(), "--decode",
                "--text", enc.out().strip());
        assertEquals(0, dec.status(), dec.err());
        assertEquals(text, dec.out());
    }

    @Test
    void badInputEndsWithOneClearLine() throws Exception {
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("tokenize", "--tokenizer", dir.resolve("none.json").toString(),
                "--text", "x"), "no such tokenizer.json");
        Path bad = Files.write(dir.resolve("latin1.txt"), new byte[] {'a', (byte) 0xe9, 'b'});
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("tokenize", "--tokenizer", tokenizer.toString(),
                "--input", bad.toString()), "not UTF-8");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("tokenize", "--tokenizer", tokenizer.toString(),
                "--decode", "--text", "[1, 99999]"), "outside the tokenizer");
    }
}
