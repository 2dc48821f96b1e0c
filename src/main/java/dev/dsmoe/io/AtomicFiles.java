package dev.dsmoe.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Atomic file replacement: write to a temporary file in the same directory, force it to disk,
 * rename it over the target, force the directory. A kill at any moment leaves either the old file
 * or the new one, never a mix.
 *
 * <p>Temporary files are named {@code .NAME.dsmoe-<16 hex digits>.tmp}: unique, so two writers of
 * one target never share one, and recognisable, so cleanup removes only the project's own. A
 * writer holds an exclusive {@link FileLock} on its temporary file until it is renamed or
 * deleted; {@link #removeStaleTemps} deletes only those nobody holds (their writer died).
 */
public final class AtomicFiles {
    private AtomicFiles() {}

    private static final Pattern TEMP = Pattern.compile("\\.(.+)\\.dsmoe-[0-9a-f]{16}\\.tmp");
    private static final SecureRandom RANDOM = new SecureRandom();
    // Windows cannot open a directory to flush it; NTFS journals renames itself.
    private static final boolean NO_DIRECTORY_SYNC = System.getProperty("os.name", "").startsWith("Windows");
    // Temporary files open in this JVM. Cleanup must not even open these: POSIX drops all of a
    // process's locks on a file when any one of its descriptors for that file is closed.
    private static final Set<Path> LIVE = ConcurrentHashMap.newKeySet();

    /** Something that writes a file's content to an open channel. */
    @FunctionalInterface
    public interface Content {
        void writeTo(FileChannel ch) throws IOException;
    }

    /** Whether {@code p} is named like one of this project's temporary files. */
    public static boolean isTemp(Path p) {
        return p.getFileName() != null && TEMP.matcher(p.getFileName().toString()).matches();
    }

    /** The target a temporary file of this project was written for, or null if {@code p} is not one. */
    public static Path targetOf(Path p) {
        if (p.getFileName() == null) return null;
        Matcher m = TEMP.matcher(p.getFileName().toString());
        return m.matches() ? p.resolveSibling(m.group(1)) : null;
    }

    /**
     * A temporary file being written for {@link #target()}, locked and open until {@link #commit()}
     * renames it over the target or {@link #close()} deletes it.
     */
    public static final class Temp implements AutoCloseable {
        private final Path path;
        private final Path target;
        private final FileChannel ch;
        private boolean done;

        private Temp(Path path, Path target, FileChannel ch) {
            this.path = path;
            this.target = target;
            this.ch = ch;
        }

        public Path path() { return path; }

        public Path target() { return target; }

        /** The open channel to write the content to. */
        public FileChannel channel() { return ch; }

        /** Forces the content written so far to disk; failures name the target. */
        public void force() throws IOException {
            try {
                ch.force(true);
            } catch (IOException e) {
                throw cannotWrite(target, e);
            }
        }

        /** Renames the file over the target atomically and forces the directory entry. */
        public void commit() throws IOException {
            if (done) throw new IllegalStateException(path + " was already committed or discarded");
            try {
                Files.move(path, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                throw new IOException(target + ": cannot rename atomically in " + target.getParent() + " ("
                        + reason(e) + ")", e);
            } catch (IOException e) {
                throw new IOException(target + ": cannot rename " + path.getFileName() + " over it (" + reason(e) + ")", e);
            }
            done = true;
            release();
            forceDirectory(target.toAbsolutePath().getParent());
        }

        /** Lets go of the file without deleting it: a commit journal now names it. */
        void abandon() {
            if (done) return;
            done = true;
            release();
        }

        /** Deletes the file unless it was committed. */
        @Override
        public void close() {
            if (done) return;
            done = true;
            release();
            try {
                Files.deleteIfExists(path);
            } catch (IOException ignored) {
                // Only after another failure; the next checkpoint save removes it as stale.
            }
        }

        private void release() {
            try {
                ch.close(); // releases the lock
            } catch (IOException ignored) {
                // Nothing was written through this close; the data was forced before.
            } finally {
                LIVE.remove(path);
            }
        }
    }

    /** Creates a new, empty, locked temporary file in {@code target}'s directory. */
    public static Temp createTemp(Path target) throws IOException {
        String name = target.getFileName().toString();
        for (int attempt = 0; ; attempt++) {
            byte[] r = new byte[8];
            RANDOM.nextBytes(r);
            Path tmp = target.resolveSibling("." + name + ".dsmoe-" + HexFormat.of().formatHex(r) + ".tmp");
            LIVE.add(tmp);
            FileChannel ch = null;
            try {
                ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                boolean mine;
                try {
                    mine = ch.tryLock() != null;
                } catch (IOException noLocks) {
                    mine = true; // a file system without locks: cleanup cannot lock it either, so keeps it
                }
                // Another process's cleanup can take the lock (and delete the file) in the moment
                // between creation and locking; then start again under a new name.
                if (mine && Files.exists(tmp)) return new Temp(tmp, target, ch);
                ch.close();
                LIVE.remove(tmp);
            } catch (FileAlreadyExistsException e) {
                if (ch != null) ch.close();
                LIVE.remove(tmp);
            } catch (IOException e) {
                if (ch != null) {
                    ch.close();
                    Files.deleteIfExists(tmp);
                }
                LIVE.remove(tmp);
                throw cannotWrite(target, e);
            }
            if (attempt == 10) throw new IOException(target + ": cannot create a temporary file beside it");
        }
    }

    /** Writes {@code content} to a new temporary file for {@code target} and forces it to disk. */
    public static Temp writeTemp(Path target, Content content) throws IOException {
        Temp t = createTemp(target);
        try {
            content.writeTo(t.ch);
            t.force();
            return t;
        } catch (IOException e) {
            t.close();
            throw cannotWrite(target, e);
        } catch (RuntimeException | Error e) {
            t.close();
            throw e;
        }
    }

    /** Writes {@code target} atomically. */
    public static void write(Path target, Content content) throws IOException {
        try (Temp t = writeTemp(target, content)) {
            t.commit();
        }
    }

    /** Writes UTF-8 text atomically. */
    public static void writeString(Path target, String text) throws IOException {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        write(target, ch -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
        });
    }

    /**
     * Flushes a directory's entries (renames) to disk. Failures are reported: a rename that is not
     * on disk can be undone by a power cut after the caller was told the file is saved.
     */
    static void forceDirectory(Path dir) throws IOException {
        if (dir == null || NO_DIRECTORY_SYNC) return;
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException e) {
            throw new IOException(dir + ": cannot flush the directory to disk (" + reason(e) + ")", e);
        }
    }

    /**
     * Deletes this project's temporary files in {@code dir} whose writer is gone (nobody holds
     * their lock); leaves every other file alone. Returns how many were deleted. Does nothing while
     * a commit journal is there: its files look stale until {@link CheckpointFiles#recover} renames them.
     */
    public static int removeStaleTemps(Path dir) throws IOException {
        if (!Files.isDirectory(dir) || Files.exists(dir.resolve(CheckpointFiles.JOURNAL))) return 0;
        List<Path> candidates;
        try (var s = Files.list(dir)) {
            candidates = s.filter(AtomicFiles::isTemp).toList();
        }
        int removed = 0;
        for (Path p : candidates) {
            if (LIVE.contains(p) || !Files.isRegularFile(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) continue;
            try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
                FileLock lock = ch.tryLock();
                if (lock == null) continue; // its writer is alive in another process
                Files.deleteIfExists(p);
                removed++;
            } catch (NoSuchFileException | OverlappingFileLockException e) {
                // renamed or deleted by its writer meanwhile, or in use here
            } catch (IOException e) {
                // Cannot tell whether it is in use (e.g. no locks on this file system): keep it.
            }
        }
        return removed;
    }

    /** An IOException whose one-line message names {@code target} and says why it could not be written. */
    public static IOException cannotWrite(Path target, IOException e) {
        String prefix = target + ": cannot write";
        if (e.getMessage() != null && e.getMessage().startsWith(target + ": ")) return e; // already says so
        return new IOException(prefix + " (" + reason(e) + ")", e);
    }

    /** The short reason of an I/O failure, without the file name a FileSystemException repeats. */
    static String reason(IOException e) {
        if (e instanceof FileSystemException f) {
            if (f.getReason() != null) return f.getReason();
            if (f instanceof AccessDeniedException) return "permission denied";
            if (f instanceof NoSuchFileException) return "no such file or directory";
            if (f instanceof FileAlreadyExistsException) return "already exists";
            return f.getClass().getSimpleName();
        }
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m.lines().findFirst().orElse(m);
    }
}
