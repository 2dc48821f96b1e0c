package dev.dsmoe.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/**
 * Atomic file replacement: write to a temporary name in the same directory, force it to disk,
 * rename over the target, force the directory. A kill at any moment leaves either the old file
 * or the new one, never a mix.
 */
public final class AtomicFiles {
    private AtomicFiles() {}

    /** Something that writes a file's content to an open channel. */
    @FunctionalInterface
    public interface Content {
        void writeTo(FileChannel ch) throws IOException;
    }

    /** The temporary name used while {@code target} is being written. */
    public static Path tempFor(Path target) {
        return target.resolveSibling(target.getFileName() + ".tmp");
    }

    /** Writes {@code content} to {@code target}'s temporary name and forces it to disk (no rename). */
    public static Path writeTemp(Path target, Content content) throws IOException {
        Path tmp = tempFor(target);
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            content.writeTo(ch);
            ch.force(true);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
        return tmp;
    }

    /** Renames {@code tmp} over {@code target} atomically and forces the directory entry. */
    public static void commit(Path tmp, Path target) throws IOException {
        try {
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException("cannot rename atomically in " + target.getParent() + ": " + e.getMessage(), e);
        }
        forceDirectory(target.toAbsolutePath().getParent());
    }

    /** Writes {@code target} atomically. */
    public static void write(Path target, Content content) throws IOException {
        commit(writeTemp(target, content), target);
    }

    /** Writes UTF-8 text atomically. */
    public static void writeString(Path target, String text) throws IOException {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        write(target, ch -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
        });
    }

    /** Flushes a directory's entries (renames) to disk; a no-op where the OS cannot open directories. */
    static void forceDirectory(Path dir) {
        if (dir == null) return;
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException ignored) {
            // Not supported on every file system; the rename itself is still atomic.
        }
    }
}
