package dev.dsmoe.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CorpusPreparerTest {

    /** A tiny code corpus: {@code n} Java-like files. */
    static Path corpus(Path dir, int n) throws IOException {
        Path src = dir.resolve("corpus");
        Files.createDirectories(src);
        for (int i = 0; i < n; i++) {
            StringBuilder sb = new StringBuilder("/* File " + i + ": the sum of the values. */\npublic final class C" + i + " {\n");
            for (int m = 0; m < 6; m++) {
                sb.append("    static int value").append(m).append("(int x) {\n        return x * ").append(i * 7 + m)
                        .append(" + count_").append(m).append(";\n    }\n");
            }
            sb.append("}\n");
            Files.writeString(src.resolve("C" + i + ".java"), sb.toString());
        }
        return src;
    }

    static CorpusPreparer.Options options(Path input, Path out, double valFraction) {
        return new CorpusPreparer.Options(List.of(input), "**", out, 400, valFraction, 1 << 20, null, false);
    }

    static final CorpusPreparer.Listener QUIET = new CorpusPreparer.Listener() { };

    @Test
    void shardsDecodeBackToTheDocumentsSeparatedByEndOfText(@TempDir Path dir) throws IOException {
        Path src = corpus(dir, 40);
        Path out = dir.resolve("out");
        CorpusPreparer.Result r = CorpusPreparer.prepare(options(src, out, 0.2), QUIET);
        assertFalse(r.upToDate());
        try (TokenDataset data = TokenDataset.open(out)) {
            Tokenizer tok = data.tokenizer();
            assertEquals(400, data.vocabSize());
            assertEquals(TokenDtype.UINT16, data.meta().dtype());
            assertEquals(40, data.meta().trainDocuments() + data.meta().valDocuments());
            assertTrue(data.meta().valDocuments() > 0 && data.meta().trainDocuments() > 0);
            Set<String> docs = new HashSet<>();
            for (TokenShard s : List.of(data.train(), data.val())) {
                int[] ids = new int[(int) s.size()];
                s.read(0, ids, 0, ids.length);
                assertEquals(tok.endOfTextId(), ids[ids.length - 1]);
                String text = tok.decode(ids);
                for (String d : text.split("<\\|endoftext\\|>")) docs.add(d);
            }
            Set<String> expected = new HashSet<>();
            try (Stream<Path> files = Files.list(src)) {
                for (Path f : files.toList()) expected.add(Files.readString(f));
            }
            assertEquals(expected, docs);
        }
    }

    @Test
    void splitIsByDocumentHashWhateverTheOrder() {
        List<String> texts = new ArrayList<>();
        for (int i = 0; i < 2000; i++) texts.add("document number " + i);
        long val = texts.stream().filter(t -> CorpusPreparer.isVal(t, 0.1)).count();
        assertTrue(val > 150 && val < 250, "val " + val);
        for (String t : texts) assertEquals(CorpusPreparer.isVal(t, 0.1), CorpusPreparer.isVal(new String(t), 0.1));
        assertEquals(0, texts.stream().filter(t -> CorpusPreparer.isVal(t, 0.0)).count());
    }

    @Test
    void outputDoesNotDependOnTheThreadCount(@TempDir Path dir) throws IOException {
        Path src = corpus(dir, 30);
        int before = Parallel.threads();
        try {
            Parallel.setThreads(1);
            CorpusPreparer.prepare(options(src, dir.resolve("one"), 0.1), QUIET);
            Parallel.setThreads(2);
            CorpusPreparer.prepare(options(src, dir.resolve("two"), 0.1), QUIET);
        } finally {
            Parallel.setThreads(before);
        }
        for (String f : List.of("train.bin", "val.bin", "tokenizer.json")) {
            assertArrayEquals(Files.readAllBytes(dir.resolve("one").resolve(f)), Files.readAllBytes(dir.resolve("two").resolve(f)), f);
        }
    }

    @Test
    void secondRunIsUpToDateUntilInputOrSettingsChange(@TempDir Path dir) throws IOException {
        Path src = corpus(dir, 10);
        Path out = dir.resolve("out");
        assertFalse(CorpusPreparer.prepare(options(src, out, 0.1), QUIET).upToDate());
        assertTrue(CorpusPreparer.prepare(options(src, out, 0.1), QUIET).upToDate());
        assertFalse(CorpusPreparer.prepare(options(src, out, 0.2), QUIET).upToDate());
        Files.writeString(src.resolve("New.java"), "class New {}");
        assertFalse(CorpusPreparer.prepare(options(src, out, 0.2), QUIET).upToDate());
        // a shard that disagrees with meta.json makes the output stale, and opening it fails clearly
        Files.write(out.resolve("train.bin"), new byte[] {1, 2, 3, 4});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(out));
        assertTrue(e.getMessage().startsWith(out.resolve("train.bin") + ": has 4 bytes but meta.json says"), e.getMessage());
        assertFalse(CorpusPreparer.prepare(options(src, out, 0.2), QUIET).upToDate());
        TokenDataset.open(out).close();
    }

    @Test
    void emptyCorpusFailsAndLeavesNothingBehind(@TempDir Path dir) throws IOException {
        Path src = dir.resolve("empty");
        Files.createDirectories(src);
        Files.writeString(src.resolve("blank.txt"), "");
        Files.write(src.resolve("binary.dat"), new byte[] {(byte) 0xff, 0});
        Path out = dir.resolve("out");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CorpusPreparer.prepare(options(src, out, 0.1), QUIET));
        assertTrue(e.getMessage().startsWith("empty corpus"), e.getMessage());
        assertTrue(e.getMessage().contains("1 skipped as not UTF-8"), e.getMessage());
        try (Stream<Path> left = Files.list(out)) {
            assertEquals(List.of(), left.toList());
        }
    }

    @Test
    void filesItDidNotWriteSurviveASuccessfulAndAFailedRun(@TempDir Path dir) throws IOException {
        Path src = corpus(dir, 10);
        Path out = Files.createDirectories(dir.resolve("out"));
        // The temporary names this class once used, and a stale temporary file of its own.
        List<String> users = List.of(".train.bin.tmp", ".val.bin.tmp", ".tokenizer.json.tmp", ".meta.json.tmp", "notes.tmp");
        for (String f : users) Files.writeString(out.resolve(f), "the user's " + f);
        Files.writeString(out.resolve(".train.bin.dsmoe-00000000deadbeef.tmp"), "left by a killed run");
        CorpusPreparer.prepare(options(src, out, 0.1), QUIET);
        for (String f : users) assertEquals("the user's " + f, Files.readString(out.resolve(f)), f);
        assertFalse(Files.exists(out.resolve(".train.bin.dsmoe-00000000deadbeef.tmp")), "the stale one is removed");

        Path empty = Files.createDirectories(dir.resolve("empty"));
        Files.writeString(empty.resolve("blank.txt"), "");
        assertThrows(IllegalArgumentException.class, () -> CorpusPreparer.prepare(options(empty, out, 0.1), QUIET));
        for (String f : users) assertEquals("the user's " + f, Files.readString(out.resolve(f)), f);
        TokenDataset.open(out).close(); // the earlier output is whole
    }
}
