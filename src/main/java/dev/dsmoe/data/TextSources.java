package dev.dsmoe.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.PathMatcher;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.function.Consumer;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * Opens corpora. Each input path is one of:
 * <ul>
 *   <li>a {@code .zip} or {@code .jar}: one document per entry whose name matches the glob;</li>
 *   <li>a directory: one document per regular file whose path relative to it matches the glob,
 *       in sorted order, hidden files and folders (names starting with '.') left out;</li>
 *   <li>a {@code .jsonl} file: one document per line, the line's JSON object's {@code text} field;</li>
 *   <li>any other file: one document.</li>
 * </ul>
 * The glob (Java {@link FileSystems#getPathMatcher} syntax, default {@code **}) applies to zip
 * entries and directory files only. The JDK's own sources, {@code $JAVA_HOME/lib/src.zip}, are
 * {@link #defaultInput()}.
 */
public final class TextSources {
    static final ObjectMapper JSON = new ObjectMapper();

    private TextSources() {}

    /** The running JDK's {@code lib/src.zip}. */
    public static Path defaultInput() {
        return Path.of(System.getProperty("java.home"), "lib", "src.zip");
    }

    /** One source over all {@code inputs} in order; errors name the path that is wrong. */
    public static TextSource open(List<Path> inputs, String glob) {
        return open(inputs, glob, null);
    }

    /**
     * {@link #open(List, String)} leaving out everything under {@code exclude} (the output
     * directory, when it lies inside an input directory), or nothing when it is null.
     */
    public static TextSource open(List<Path> inputs, String glob, Path exclude) {
        if (inputs.isEmpty()) throw new IllegalArgumentException("no input given");
        PathMatcher matcher;
        try {
            matcher = FileSystems.getDefault().getPathMatcher("glob:" + glob);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--glob " + glob + ": not a valid glob (" + e.getMessage().lines().findFirst().orElse("") + ")");
        }
        List<TextSource> sources = new ArrayList<>();
        Path ex = exclude == null ? null : exclude.toAbsolutePath().normalize();
        for (Path p : inputs) sources.add(openOne(p, glob, matcher, ex));
        return sources.size() == 1 ? sources.get(0) : new Multi(sources);
    }

    private static TextSource openOne(Path p, String glob, PathMatcher matcher, Path exclude) {
        if (!Files.exists(p)) throw new IllegalArgumentException("--input " + p + ": no such file or directory");
        if (!Files.isReadable(p)) throw new IllegalArgumentException("--input " + p + ": not readable (permission denied)");
        String name = p.getFileName() == null ? "" : p.getFileName().toString().toLowerCase(java.util.Locale.ROOT);
        if (Files.isDirectory(p)) return new Directory(p, glob, matcher, exclude);
        if (name.endsWith(".zip") || name.endsWith(".jar")) return new Zip(p, glob, matcher);
        if (name.endsWith(".jsonl")) return new Jsonl(p);
        return new TextFile(p);
    }

    /** Decodes strict UTF-8, or returns null when {@code bytes} are not valid UTF-8. */
    static String utf8OrNull(byte[] bytes) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }

    private static String fileFingerprint(Path p) throws IOException {
        return p.toAbsolutePath().normalize() + ":" + Files.size(p) + ":" + Files.getLastModifiedTime(p).toMillis();
    }

    /** Reads one file as one document, or counts it skipped. */
    private static ReadResult readFileDoc(Path p, String name, Consumer<Document> sink) throws IOException {
        byte[] b = Files.readAllBytes(p);
        String text = utf8OrNull(b);
        if (text == null) return ReadResult.SKIPPED;
        if (!text.isEmpty()) sink.accept(new Document(name, text, b.length));
        return text.isEmpty() ? ReadResult.EMPTY : new ReadResult(b.length);
    }

    private record ReadResult(long bytes) {
        static final ReadResult SKIPPED = new ReadResult(-1);
        static final ReadResult EMPTY = new ReadResult(0);
    }

    private static final class Stats {
        long docs, bytes, skipped;
        String first;

        void add(ReadResult r, String name) {
            if (r.bytes < 0) {
                skipped++;
                if (first == null) first = name;
            } else if (r.bytes > 0) {
                docs++;
                bytes += r.bytes;
            }
        }

        TextSource.ReadStats done() {
            return new TextSource.ReadStats(docs, bytes, skipped, first);
        }
    }

    /** A source that is one plain file: its size is the total, its fingerprint the file's. */
    private abstract static class SingleFile implements TextSource {
        final Path path;
        private final String kind;

        SingleFile(String kind, Path path) {
            this.kind = kind;
            this.path = path;
        }

        @Override
        public String description() {
            return kind + " " + path;
        }

        @Override
        public long totalBytes() {
            try {
                return Files.size(path);
            } catch (IOException e) {
                return 0;
            }
        }

        @Override
        public String fingerprint() throws IOException {
            return fileFingerprint(path);
        }
    }

    static final class TextFile extends SingleFile {
        TextFile(Path path) {
            super("file", path);
        }

        @Override
        public ReadStats read(Consumer<Document> sink) throws IOException {
            Stats s = new Stats();
            s.add(readFileDoc(path, path.toString(), sink), path.toString());
            return s.done();
        }
    }

    static final class Directory implements TextSource {
        final Path root;
        final String glob;
        final List<Path> files;
        final long total;

        Directory(Path root, String glob, PathMatcher matcher, Path exclude) {
            this.root = root;
            this.glob = glob;
            try (Stream<Path> walk = Files.walk(root)) {
                files = walk.filter(Files::isRegularFile)
                        .filter(f -> exclude == null || !f.toAbsolutePath().normalize().startsWith(exclude))
                        .filter(f -> {
                            Path rel = root.relativize(f);
                            for (Path part : rel) if (part.toString().startsWith(".")) return false;
                            return matcher.matches(rel);
                        })
                        .sorted().toList();
                long t = 0;
                for (Path f : files) t += Files.size(f);
                total = t;
            } catch (IOException | java.io.UncheckedIOException e) {
                throw new IllegalArgumentException("--input " + root + ": cannot list the directory (" + e.getMessage() + ")");
            }
        }

        @Override
        public String description() {
            return "directory " + root + " (glob " + glob + ", " + files.size() + " files)";
        }

        @Override
        public long totalBytes() {
            return total;
        }

        @Override
        public String fingerprint() throws IOException {
            long latest = 0;
            for (Path f : files) latest = Math.max(latest, Files.getLastModifiedTime(f).toMillis());
            return root.toAbsolutePath().normalize() + ":" + glob + ":" + files.size() + ":" + total + ":" + latest;
        }

        @Override
        public ReadStats read(Consumer<Document> sink) throws IOException {
            Stats s = new Stats();
            for (Path f : files) {
                String name = root.relativize(f).toString();
                try {
                    s.add(readFileDoc(f, name, sink), name);
                } catch (java.nio.file.AccessDeniedException e) {
                    throw new IllegalArgumentException("--input " + f + ": not readable (permission denied)");
                }
            }
            return s.done();
        }
    }

    static final class Zip implements TextSource {
        final Path path;
        final String glob;
        final PathMatcher matcher;
        final long total;
        final int entries;

        Zip(Path path, String glob, PathMatcher matcher) {
            this.path = path;
            this.glob = glob;
            this.matcher = matcher;
            long t = 0;
            int n = 0;
            try (ZipFile zf = new ZipFile(path.toFile())) {
                for (Enumeration<? extends ZipEntry> en = zf.entries(); en.hasMoreElements(); ) {
                    ZipEntry e = en.nextElement();
                    if (matches(e)) {
                        t += Math.max(0, e.getSize());
                        n++;
                    }
                }
            } catch (IOException e) {
                throw new IllegalArgumentException("--input " + path + ": not a readable zip file (" + e.getMessage() + ")");
            }
            total = t;
            entries = n;
        }

        private boolean matches(ZipEntry e) {
            if (e.isDirectory()) return false;
            try {
                return matcher.matches(Path.of(e.getName()));
            } catch (java.nio.file.InvalidPathException ex) {
                return false;
            }
        }

        @Override
        public String description() {
            return "zip " + path + " (glob " + glob + ", " + entries + " entries)";
        }

        @Override
        public long totalBytes() {
            return total;
        }

        @Override
        public String fingerprint() throws IOException {
            return fileFingerprint(path) + ":" + glob;
        }

        @Override
        public ReadStats read(Consumer<Document> sink) throws IOException {
            Stats s = new Stats();
            try (ZipFile zf = new ZipFile(path.toFile())) {
                for (Enumeration<? extends ZipEntry> en = zf.entries(); en.hasMoreElements(); ) {
                    ZipEntry e = en.nextElement();
                    if (!matches(e)) continue;
                    byte[] b;
                    try (InputStream in = zf.getInputStream(e)) {
                        b = in.readAllBytes();
                    }
                    String text = utf8OrNull(b);
                    if (text == null) s.add(ReadResult.SKIPPED, e.getName());
                    else if (!text.isEmpty()) {
                        sink.accept(new Document(e.getName(), text, b.length));
                        s.add(new ReadResult(b.length), e.getName());
                    }
                }
            } catch (java.util.zip.ZipException e) {
                throw new IllegalArgumentException("--input " + path + ": corrupt zip file (" + e.getMessage() + ")");
            }
            return s.done();
        }
    }

    /** One document per line: a JSON object with a string field {@code text}. */
    static final class Jsonl extends SingleFile {
        Jsonl(Path path) {
            super("jsonl", path);
        }

        @Override
        public ReadStats read(Consumer<Document> sink) throws IOException {
            Stats s = new Stats();
            try (InputStream in = new BufferedInputStream(Files.newInputStream(path), 1 << 16)) {
                ByteArrayOutputStream line = new ByteArrayOutputStream();
                long lineNo = 0;
                int c;
                boolean more = true;
                while (more) {
                    c = in.read();
                    if (c >= 0 && c != '\n') {
                        line.write(c);
                        continue;
                    }
                    more = c >= 0;
                    lineNo++;
                    byte[] b = line.toByteArray();
                    line.reset();
                    String where = path + ":" + lineNo;
                    String text = utf8OrNull(b);
                    if (text == null) {
                        s.add(ReadResult.SKIPPED, where);
                        continue;
                    }
                    if (text.isBlank()) continue;
                    String doc = textField(text, where);
                    if (!doc.isEmpty()) {
                        long n = doc.getBytes(StandardCharsets.UTF_8).length;
                        sink.accept(new Document(where, doc, n));
                        s.add(new ReadResult(b.length), where);
                    }
                }
            }
            return s.done();
        }

        private static String textField(String line, String where) {
            JsonNode node;
            try {
                node = JSON.readTree(line);
            } catch (JsonProcessingException e) {
                throw new IllegalArgumentException(where + ": not a JSON object (" + e.getOriginalMessage().lines().findFirst().orElse("") + ")");
            }
            if (node == null || !node.isObject() || !node.path("text").isTextual()) {
                throw new IllegalArgumentException(where + ": expected a JSON object with a string field \"text\"");
            }
            return node.get("text").asText();
        }
    }

    static final class Multi implements TextSource {
        final List<TextSource> parts;

        Multi(List<TextSource> parts) {
            this.parts = parts;
        }

        @Override
        public String description() {
            return String.join(" + ", parts.stream().map(TextSource::description).toList());
        }

        @Override
        public long totalBytes() {
            return parts.stream().mapToLong(TextSource::totalBytes).sum();
        }

        @Override
        public String fingerprint() throws IOException {
            StringBuilder sb = new StringBuilder();
            for (TextSource p : parts) sb.append(p.fingerprint()).append(';');
            return sb.toString();
        }

        @Override
        public ReadStats read(Consumer<Document> sink) throws IOException {
            ReadStats s = ReadStats.NONE;
            for (TextSource p : parts) s = s.plus(p.read(sink));
            return s;
        }
    }
}
