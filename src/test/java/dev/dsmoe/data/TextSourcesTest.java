package dev.dsmoe.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TextSourcesTest {
    static final byte[] NOT_UTF8 = {'a', (byte) 0xff, (byte) 0xfe, 'b'};

    static List<Document> readAll(TextSource s) throws IOException {
        List<Document> out = new ArrayList<>();
        s.read(out::add);
        return out;
    }

    static Path zip(Path dir, String name, String... entries) throws IOException {
        Path z = dir.resolve(name);
        try (ZipOutputStream out = new ZipOutputStream(Files.newOutputStream(z))) {
            for (int i = 0; i < entries.length; i += 2) {
                out.putNextEntry(new ZipEntry(entries[i]));
                out.write(entries[i + 1].getBytes(StandardCharsets.UTF_8));
                out.closeEntry();
            }
        }
        return z;
    }

    @Test
    void zipGivesOneDocumentPerMatchingEntryInOrder(@TempDir Path dir) throws IOException {
        Path z = zip(dir, "src.zip", "a/A.java", "class A {}", "a/notes.txt", "notes", "b/B.java", "class B {}", "empty.java", "");
        List<Document> all = readAll(TextSources.open(List.of(z), "**"));
        assertEquals(List.of("a/A.java", "a/notes.txt", "b/B.java"), all.stream().map(Document::name).toList());
        List<Document> java = readAll(TextSources.open(List.of(z), "**.java"));
        assertEquals(List.of("class A {}", "class B {}"), java.stream().map(Document::text).toList());
        assertEquals(10, java.get(0).bytes());
    }

    @Test
    void directoryWithGlobReadsMatchingFilesSortedAndSkipsHidden(@TempDir Path dir) throws IOException {
        Files.createDirectories(dir.resolve("src/b"));
        Files.createDirectories(dir.resolve(".git"));
        Files.writeString(dir.resolve("src/b/Two.java"), "two");
        Files.writeString(dir.resolve("src/One.java"), "one");
        Files.writeString(dir.resolve("src/readme.md"), "readme");
        Files.writeString(dir.resolve(".git/config.java"), "hidden");
        TextSource s = TextSources.open(List.of(dir), "**.java");
        assertEquals(List.of("src/One.java", "src/b/Two.java"), readAll(s).stream().map(Document::name).toList());
        assertEquals(6, s.totalBytes());
        assertEquals(3, readAll(TextSources.open(List.of(dir), "**")).size());
    }

    @Test
    void jsonlGivesOneDocumentPerLineFromTheTextField(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("c.jsonl");
        Files.writeString(f, "{\"text\": \"first\\nline\", \"id\": 1}\n\n{\"text\": \"caf\u00e9 \ud83d\ude00\"}\n{\"text\": \"\"}\n{\"text\":\"last\"}");
        List<Document> docs = readAll(TextSources.open(List.of(f), "**"));
        assertEquals(List.of("first\nline", "caf\u00e9 \ud83d\ude00", "last"), docs.stream().map(Document::text).toList());
        assertEquals(f + ":1", docs.get(0).name());
        assertEquals(10, docs.get(1).bytes());
    }

    @Test
    void badJsonlLineIsOneLineNamingFileAndLine(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("bad.jsonl");
        Files.writeString(f, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> readAll(TextSources.open(List.of(f), "**")));
        assertTrue(e.getMessage().startsWith(f + ":2: "), e.getMessage());
        Files.writeString(f, "{not json\n");
        e = assertThrows(IllegalArgumentException.class, () -> readAll(TextSources.open(List.of(f), "**")));
        assertTrue(e.getMessage().startsWith(f + ":1: not a JSON object"), e.getMessage());
    }

    @Test
    void textFilesAreOneDocumentEachAndSeveralInputsConcatenate(@TempDir Path dir) throws IOException {
        Path a = Files.writeString(dir.resolve("a.txt"), "alpha");
        Path b = Files.writeString(dir.resolve("b.md"), "beta");
        TextSource s = TextSources.open(List.of(a, b), "**");
        assertEquals(List.of("alpha", "beta"), readAll(s).stream().map(Document::text).toList());
        assertTrue(s.description().contains("a.txt") && s.description().contains("b.md"), s.description());
    }

    @Test
    void nonUtf8FilesAreSkippedAndCounted(@TempDir Path dir) throws IOException {
        Files.writeString(dir.resolve("good.txt"), "good");
        Files.write(dir.resolve("bad.bin"), NOT_UTF8);
        Files.write(dir.resolve("bad2.txt"), new byte[] {(byte) 0xc3, (byte) 0x28});
        TextSource s = TextSources.open(List.of(dir), "**");
        List<Document> docs = new ArrayList<>();
        TextSource.ReadStats stats = s.read(docs::add);
        assertEquals(1, docs.size());
        assertEquals(1, stats.documents());
        assertEquals(2, stats.skipped());
        assertEquals("bad.bin", stats.firstSkipped());
        Path j = dir.resolve("mixed.jsonl");
        try (OutputStream out = Files.newOutputStream(j)) {
            out.write("{\"text\": \"fine\"}\n{\"text\": \"".getBytes(StandardCharsets.UTF_8));
            out.write(NOT_UTF8);
            out.write("\"}\n".getBytes(StandardCharsets.UTF_8));
        }
        TextSource.ReadStats js = TextSources.open(List.of(j), "**").read(d -> { });
        assertEquals(1, js.documents());
        assertEquals(1, js.skipped());
    }

    @Test
    void missingAndUnreadablePathsAreOneLineErrors(@TempDir Path dir) throws IOException {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TextSources.open(List.of(dir.resolve("nope.zip")), "**"));
        assertEquals("--input " + dir.resolve("nope.zip") + ": no such file or directory", e.getMessage());
        Path notZip = Files.writeString(dir.resolve("broken.zip"), "this is not a zip");
        e = assertThrows(IllegalArgumentException.class, () -> TextSources.open(List.of(notZip), "**"));
        assertTrue(e.getMessage().startsWith("--input " + notZip + ": not a readable zip file"), e.getMessage());
        Path secret = Files.writeString(dir.resolve("secret.txt"), "x");
        if (secret.toFile().setReadable(false) && !Files.isReadable(secret)) { // root can read anything
            e = assertThrows(IllegalArgumentException.class, () -> TextSources.open(List.of(secret), "**"));
            assertTrue(e.getMessage().contains("not readable"), e.getMessage());
        }
    }

    @Test
    void fingerprintChangesWhenTheInputChanges(@TempDir Path dir) throws IOException {
        Path f = Files.writeString(dir.resolve("a.txt"), "one");
        String before = TextSources.open(List.of(dir), "**").fingerprint();
        assertEquals(before, TextSources.open(List.of(dir), "**").fingerprint());
        Files.writeString(f, "one two");
        assertNotEquals(before, TextSources.open(List.of(dir), "**").fingerprint());
    }
}
