package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ./dsmoe generate} on a tiny model trained in the test. */
class GenerateCommandTest {

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void train() throws IOException {
        Path data = TrainCommandTest.prepareData(dir);
        model = dir.resolve("model");
        PrepareCommandTest.Run r = PrepareCommandTest.run(TrainCommandTest.argsFor(data, "--out", model.toString(), "--steps", "3"));
        assertEquals(0, r.status(), r.err());
    }

    @Test
    void greedyGenerationStreamsTextAndReportsSpeedAndExperts() {
        PrepareCommandTest.Run r = PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class F1 {",
                "--max-tokens", "5", "--temperature", "0", "--strategy", "top-k:2");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().startsWith("class F1 {"), r.out());
        assertTrue(r.err().contains("decode") && r.err().contains("MLP 2.00 of 4"), r.err());
        PrepareCommandTest.Run again = PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "class F1 {",
                "--max-tokens", "5", "--temperature", "0", "--strategy", "top-k:2");
        assertEquals(r.out(), again.out(), "greedy decoding is deterministic");
    }

    @Test
    void badInputEndsWithOneClearLine() {
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", dir.resolve("none").toString(),
                "--prompt", "x"), "no such model directory");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", model.toString(), "--prompt", "x",
                "--strategy", "sometimes"), "unknown expert selection");
        TrainCommandTest.assertOneLineError(PrepareCommandTest.run("generate", "--model", model.toString(),
                "--prompt", "int x = 1; ".repeat(40)), "the model's context is 32");
    }

    @Test
    void streamingReleasesOnlyWholeCharacters() throws IOException {
        Tokenizer tok = Tokenizer.load(model.resolve("tokenizer.json"));
        GenerateCommand.StreamingText s = new GenerateCommand.StreamingText(tok);
        StringBuilder seen = new StringBuilder();
        for (int b : "é€".getBytes(java.nio.charset.StandardCharsets.UTF_8)) seen.append(s.add(b & 0xff)); // byte tokens 0-255
        assertEquals("é€", seen.toString());
    }
}
