package dev.dsmoe.io;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Replaces several files of a checkpoint directory as one atomic change, so a kill at any moment
 * leaves either the whole previous checkpoint or the whole new one:
 * <ol>
 *   <li>every new file is written under its temporary name and forced to disk;</li>
 *   <li>a journal ({@value #JOURNAL}) naming those files is written atomically: the commit point;</li>
 *   <li>each temporary file is renamed over its target;</li>
 *   <li>the journal is deleted.</li>
 * </ol>
 * {@link #recover} finishes step 3 when a journal is present (the new checkpoint is complete on
 * disk) and otherwise deletes leftover temporary files (the old checkpoint is untouched).
 */
public final class CheckpointFiles {

    /** The journal's file name. */
    public static final String JOURNAL = ".checkpoint-commit";

    private final Path dir;
    private final Map<String, AtomicFiles.Content> files = new LinkedHashMap<>();
    private final Map<String, SafeTensors.Writer> tensors = new LinkedHashMap<>();

    public CheckpointFiles(Path dir) {
        this.dir = dir;
    }

    /** Adds a file with arbitrary content. */
    public CheckpointFiles file(String name, AtomicFiles.Content content) {
        files.put(name, content);
        return this;
    }

    /** Adds a UTF-8 text file. */
    public CheckpointFiles text(String name, String text) {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        return file(name, ch -> {
            var buf = java.nio.ByteBuffer.wrap(b);
            while (buf.hasRemaining()) ch.write(buf);
        });
    }

    /** Adds a safetensors file. */
    public CheckpointFiles safetensors(String name, SafeTensors.Writer writer) {
        tensors.put(name, writer);
        return this;
    }

    /** Writes everything as one atomic change. */
    public void commit() throws IOException {
        Files.createDirectories(dir);
        recover(dir);
        List<String> names = new ArrayList<>();
        List<Path> temps = new ArrayList<>();
        try {
            for (Map.Entry<String, SafeTensors.Writer> e : tensors.entrySet()) {
                temps.add(e.getValue().writeTemp(dir.resolve(e.getKey())));
                names.add(e.getKey());
            }
            for (Map.Entry<String, AtomicFiles.Content> e : files.entrySet()) {
                temps.add(AtomicFiles.writeTemp(dir.resolve(e.getKey()), e.getValue()));
                names.add(e.getKey());
            }
        } catch (IOException | RuntimeException e) {
            for (Path t : temps) Files.deleteIfExists(t);
            throw e;
        }
        AtomicFiles.writeString(dir.resolve(JOURNAL), String.join("\n", names) + "\n");
        finish(dir, names);
    }

    private static void finish(Path dir, List<String> names) throws IOException {
        for (String n : names) {
            Path target = dir.resolve(n), tmp = AtomicFiles.tempFor(target);
            if (Files.exists(tmp)) AtomicFiles.commit(tmp, target);
        }
        Files.deleteIfExists(dir.resolve(JOURNAL));
        AtomicFiles.forceDirectory(dir);
    }

    /**
     * Brings {@code dir} to a consistent state after a crash: completes a committed change, or
     * removes the temporary files of an uncommitted one. Returns true when something was repaired.
     */
    public static boolean recover(Path dir) throws IOException {
        Path journal = dir.resolve(JOURNAL);
        if (Files.exists(journal)) {
            List<String> names = Files.readAllLines(journal, StandardCharsets.UTF_8).stream()
                    .filter(s -> !s.isBlank()).toList();
            finish(dir, names);
            return true;
        }
        boolean repaired = false;
        if (Files.isDirectory(dir)) {
            try (var s = Files.list(dir)) {
                for (Path p : s.filter(p -> p.getFileName().toString().endsWith(".tmp")).toList()) {
                    Files.deleteIfExists(p);
                    repaired = true;
                }
            }
        }
        return repaired;
    }
}
