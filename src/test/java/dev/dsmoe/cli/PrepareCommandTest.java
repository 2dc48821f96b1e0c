package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.data.TokenDataset;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ./dsmoe prepare} end to end through {@link Main#run}. */
class PrepareCommandTest {

    record Run(int status, String out, String err) {}

    static synchronized Run run(String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int status = Main.run(args);
            return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    static Path corpus(Path dir) throws IOException {
        Path src = dir.resolve("corpus");
        Files.createDirectories(src);
        for (int i = 0; i < 30; i++) {
            Files.writeString(src.resolve("F" + i + ".java"), "class F" + i + " {\n    int x = " + i + ";\n    // the value of x\n}\n");
        }
        return src;
    }

    static void assertOneLineError(Run r, String expectedStart) {
        assertEquals(2, r.status(), r.err());
        assertTrue(r.err().startsWith("dsmoe prepare: " + expectedStart), r.err());
        assertEquals(1, r.err().lines().count(), r.err());
        assertFalse(r.err().contains("Exception"), r.err());
    }

    static List<String> files(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void tinyCorpusPreparesThenSecondRunSaysUpToDate(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        Path out = dir.resolve("data");
        Run first = run("prepare", "--input", src.toString(), "--out", out.toString(), "--vocab-size", "300", "--val-fraction", "0.2");
        assertEquals(0, first.status(), first.err());
        assertTrue(first.out().contains("prepared 30 documents"), first.out());
        assertTrue(first.out().contains("bytes/token"), first.out());
        assertTrue(first.out().contains("skipped 0 not UTF-8"), first.out());
        assertEquals(List.of("meta.json", "tokenizer.json", "train.bin", "val.bin"), files(out));
        try (TokenDataset d = TokenDataset.open(out)) {
            assertEquals(300, d.vocabSize());
            assertTrue(d.train().size() > 0);
        }
        Run second = run("prepare", "--input", src.toString(), "--out", out.toString(), "--vocab-size", "300", "--val-fraction", "0.2");
        assertEquals(0, second.status(), second.err());
        assertTrue(second.out().contains("is up to date"), second.out());
    }

    @Test
    void outputInsideTheInputDirectoryIsNotReadAsInput(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        Path out = src.resolve("data");
        Run first = run("prepare", "--input", src.toString(), "--out", out.toString(), "--vocab-size", "300");
        assertEquals(0, first.status(), first.err());
        assertTrue(first.out().contains("prepared 30 documents"), first.out());
        Run second = run("prepare", "--input", src.toString(), "--out", out.toString(), "--vocab-size", "300");
        assertTrue(second.out().contains("is up to date"), second.out());
    }

    @Test
    void nonUtf8FilesAreSkippedAndCountedInTheSummary(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        Files.write(src.resolve("image.png"), new byte[] {(byte) 0x89, 'P', 'N', 'G', (byte) 0xff});
        Run r = run("prepare", "--input", src.toString(), "--out", dir.resolve("data").toString(), "--vocab-size", "300");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("skipped 1 not UTF-8 (first: image.png)"), r.out());
    }

    @Test
    void missingInputExitsTwoWithOneLine(@TempDir Path dir) {
        Path missing = dir.resolve("nowhere");
        Run r = run("prepare", "--input", missing.toString(), "--out", dir.resolve("data").toString());
        assertOneLineError(r, "--input " + missing + ": no such file or directory");
        assertFalse(Files.exists(dir.resolve("data")));
    }

    @Test
    void emptyCorpusExitsTwoAndWritesNothing(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        Path out = dir.resolve("data");
        Run r = run("prepare", "--input", src.toString(), "--glob", "**.py", "--out", out.toString());
        assertOneLineError(r, "empty corpus");
        assertTrue(!Files.exists(out) || files(out).isEmpty());
    }

    @Test
    void unwritableOutputExitsTwo(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        Path file = Files.writeString(dir.resolve("afile"), "x");
        Run r = run("prepare", "--input", src.toString(), "--out", file.resolve("sub").toString());
        assertOneLineError(r, "--out " + file.resolve("sub") + ": ");
        r = run("prepare", "--input", src.toString(), "--out", file.toString());
        assertOneLineError(r, "--out " + file + ": exists and is not a directory");
    }

    @Test
    void corruptTokenizerJsonExitsTwoAndLeavesTheOldOutputUntouched(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        Path out = dir.resolve("data");
        assertEquals(0, run("prepare", "--input", src.toString(), "--out", out.toString(), "--vocab-size", "300").status());
        byte[] train = Files.readAllBytes(out.resolve("train.bin"));
        byte[] meta = Files.readAllBytes(out.resolve("meta.json"));
        Path bad = Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": ");
        Run r = run("prepare", "--input", src.toString(), "--out", out.toString(), "--tokenizer", bad.toString());
        assertOneLineError(r, bad + ": not a usable tokenizer.json: invalid JSON");
        assertArrayEquals(train, Files.readAllBytes(out.resolve("train.bin")));
        assertArrayEquals(meta, Files.readAllBytes(out.resolve("meta.json")));
        assertEquals(List.of("meta.json", "tokenizer.json", "train.bin", "val.bin"), files(out));
    }

    @Test
    void existingTokenizerIsUsedAsGiven(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        Path first = dir.resolve("first");
        assertEquals(0, run("prepare", "--input", src.toString(), "--out", first.toString(), "--vocab-size", "300").status());
        Path second = dir.resolve("second");
        Run r = run("prepare", "--input", src.toString(), "--out", second.toString(), "--tokenizer", first.resolve("tokenizer.json").toString());
        assertEquals(0, r.status(), r.err());
        assertFalse(r.out().contains("tokenizer: "), r.out());
        assertArrayEquals(Files.readAllBytes(first.resolve("train.bin")), Files.readAllBytes(second.resolve("train.bin")));
    }

    @Test
    void badFlagValuesExitTwo(@TempDir Path dir) throws IOException {
        Path src = corpus(dir);
        assertOneLineError(run("prepare", "--input", src.toString(), "--out", dir.resolve("d").toString(), "--vocab-size", "100"),
                "--vocab-size must be at least 257");
        assertOneLineError(run("prepare", "--input", src.toString(), "--out", dir.resolve("d").toString(), "--val-fraction", "1.5"),
                "--val-fraction must be in [0, 1)");
    }
}
