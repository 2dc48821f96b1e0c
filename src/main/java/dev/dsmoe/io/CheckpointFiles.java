package dev.dsmoe.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Replaces several files of a checkpoint directory as one atomic change, so a kill at any moment
 * leaves either the whole previous checkpoint or the whole new one:
 * <ol>
 *   <li>every new file is written to its own temporary file ({@link AtomicFiles#createTemp}) and
 *       forced to disk;</li>
 *   <li>under the directory's lock ({@value #LOCK}), a journal ({@value #JOURNAL}) saying which
 *       temporary file becomes which target is written atomically: the commit point;</li>
 *   <li>each temporary file is renamed over its target;</li>
 *   <li>the journal is deleted and the lock released.</li>
 * </ol>
 * {@link #recover} finishes step 3 when a journal is present (the new checkpoint is complete on
 * disk), then deletes the project's temporary files that no live writer holds (an uncommitted
 * change; the old checkpoint is untouched). No other file is ever deleted.
 *
 * <p>Readers call {@link #requireWhole} first: a journal means a save was interrupted (or is being
 * committed right now); a reader that can take the lock and write in the directory finishes it,
 * any other refuses rather than read a mix of two checkpoints.
 *
 * <p>The lock is an exclusive {@link FileLock} on {@value #LOCK}, taken only for the short commit
 * (not while the large files are written) and for recovery. The lock file stays in place: deleting
 * it would let a second process lock a new file of the same name while the first still holds the old.
 */
public final class CheckpointFiles {

    /** The journal's file name. */
    public static final String JOURNAL = ".checkpoint-commit";
    /** The lock file's name. */
    public static final String LOCK = ".checkpoint.lock";

    /** How long a writer waits for another process's commit or recovery to end. */
    static final Duration WRITER_WAIT = Duration.ofSeconds(60);
    /** How long a reader waits for a commit in progress before refusing. */
    static final Duration READER_WAIT = Duration.ofSeconds(2);

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int JOURNAL_FORMAT = 1;
    // Lock files held in this JVM: FileChannel locks are per process, and closing a second
    // channel on a held lock file would release the first's lock.
    private static final Set<Path> HELD = ConcurrentHashMap.newKeySet();

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
        try (Lock l = lock(dir)) {
            recoverLocked(dir);
        }
        List<AtomicFiles.Temp> temps = new ArrayList<>();
        boolean journaled = false;
        try {
            for (Map.Entry<String, SafeTensors.Writer> e : tensors.entrySet()) {
                temps.add(e.getValue().writeTemp(dir.resolve(e.getKey())));
            }
            for (Map.Entry<String, AtomicFiles.Content> e : files.entrySet()) {
                temps.add(AtomicFiles.writeTemp(dir.resolve(e.getKey()), e.getValue()));
            }
            try (Lock l = lock(dir)) {
                finishJournal(dir); // one left by a writer that died while we wrote
                writeJournal(dir, temps);
                journaled = true;
                for (AtomicFiles.Temp t : temps) t.commit();
                Files.delete(dir.resolve(JOURNAL));
                AtomicFiles.forceDirectory(dir);
            }
        } finally {
            // Past the commit point the journal owns the files: keep them for recovery.
            for (AtomicFiles.Temp t : temps) {
                if (journaled) t.abandon();
                else t.close();
            }
        }
    }

    /** Writes the journal: one entry per file, its temporary name and its target (both in {@code dir}). */
    static void writeJournal(Path dir, List<AtomicFiles.Temp> temps) throws IOException {
        ObjectNode root = JSON.createObjectNode().put("format", JOURNAL_FORMAT);
        ArrayNode entries = root.putArray("files");
        for (AtomicFiles.Temp t : temps) {
            entries.addObject().put("temp", t.path().getFileName().toString()).put("target", t.target().getFileName().toString());
        }
        AtomicFiles.writeString(dir.resolve(JOURNAL), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(root) + "\n");
    }

    /** Renames every temporary file the journal names over its target, then deletes the journal. */
    private static boolean finishJournal(Path dir) throws IOException {
        Path journal = dir.resolve(JOURNAL);
        if (!Files.exists(journal)) return false;
        for (String[] e : readJournal(journal)) {
            Path tmp = dir.resolve(e[0]), target = dir.resolve(e[1]);
            if (Files.exists(tmp)) {
                try {
                    Files.move(tmp, target, java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                            java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                } catch (IOException ex) {
                    throw new IOException(target + ": cannot finish the interrupted checkpoint save ("
                            + AtomicFiles.reason(ex) + ")", ex);
                }
            }
        }
        AtomicFiles.forceDirectory(dir);
        Files.delete(journal);
        AtomicFiles.forceDirectory(dir);
        return true;
    }

    /** (temporary name, target name) pairs; a journal naming anything outside its directory is refused. */
    private static List<String[]> readJournal(Path journal) throws IOException {
        String text = Files.readString(journal, StandardCharsets.UTF_8);
        List<String[]> out = new ArrayList<>();
        if (!text.stripLeading().startsWith("{")) {
            // Written before temporary names were unique: target names, one a line, each with "NAME.tmp".
            for (String n : text.lines().filter(s -> !s.isBlank()).toList()) {
                out.add(new String[] {checkName(journal, n + ".tmp"), checkName(journal, n)});
            }
            return out;
        }
        JsonNode root;
        try {
            root = JSON.readTree(text);
        } catch (IOException e) {
            throw new IOException(journal + ": unreadable commit journal (" + AtomicFiles.reason(e) + ")", e);
        }
        if (root.path("format").asInt(-1) != JOURNAL_FORMAT || !root.path("files").isArray()) {
            throw new IOException(journal + ": commit journal of an unknown format (written by a newer dsmoe?)");
        }
        for (JsonNode e : root.path("files")) {
            String tmp = checkName(journal, e.path("temp").asText("")), target = checkName(journal, e.path("target").asText(""));
            Path t = AtomicFiles.targetOf(Path.of(tmp));
            if (t == null || !t.toString().equals(target)) {
                throw new IOException(journal + ": entry " + tmp + " -> " + target + " is not a temporary file of its target");
            }
            out.add(new String[] {tmp, target});
        }
        return out;
    }

    private static String checkName(Path journal, String name) throws IOException {
        if (name.isEmpty() || name.equals(".") || name.equals("..") || name.contains("/") || name.contains("\\")
                || name.indexOf('\0') >= 0) {
            throw new IOException(journal + ": names '" + name + "', not a file of its directory");
        }
        return name;
    }

    /**
     * Brings {@code dir} to a consistent state after a crash: completes a committed change, and
     * removes the temporary files of uncommitted ones whose writers are gone. Returns true when
     * something was repaired. Takes the directory's lock (waiting for a commit in progress).
     */
    public static boolean recover(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) return false;
        try (Lock l = lock(dir)) {
            return recoverLocked(dir);
        }
    }

    private static boolean recoverLocked(Path dir) throws IOException {
        boolean finished = finishJournal(dir);
        return AtomicFiles.removeStaleTemps(dir) > 0 || finished;
    }

    /**
     * For readers: makes sure {@code dir} holds one whole checkpoint. An interrupted save is
     * finished when the lock can be taken and the directory written; otherwise this refuses with a
     * one-line IOException that says how to repair it.
     */
    public static void requireWhole(Path dir) throws IOException {
        Path journal = dir.resolve(JOURNAL);
        if (!Files.exists(journal)) return;
        String why;
        if (!Files.isWritable(dir)) {
            why = "the directory is not writable";
        } else {
            try (Lock l = tryLock(dir, READER_WAIT)) {
                if (l != null) {
                    finishJournal(dir);
                    return;
                }
                if (!Files.exists(journal)) return; // the save in progress has ended
                why = "another process holds " + LOCK;
            } catch (IOException e) {
                why = AtomicFiles.reason(e);
            }
        }
        throw new IOException(dir + ": a checkpoint save there was interrupted or is in progress (" + JOURNAL
                + " present) and cannot be finished from here (" + why + "); run 'dsmoe train --resume " + dir
                + "' on it to repair it");
    }

    /** An exclusive hold on a checkpoint directory's lock file; {@link #close()} releases it. */
    public static final class Lock implements AutoCloseable {
        private final Path file;
        private final FileChannel ch;

        private Lock(Path file, FileChannel ch) {
            this.file = file;
            this.ch = ch;
        }

        @Override
        public void close() throws IOException {
            try {
                ch.close(); // releases the lock
            } finally {
                HELD.remove(file);
            }
        }
    }

    /** Takes {@code dir}'s lock, waiting up to {@link #WRITER_WAIT}; an IOException if it stays held. */
    static Lock lock(Path dir) throws IOException {
        Lock l = tryLock(dir, WRITER_WAIT);
        if (l == null) {
            throw new IOException(dir.resolve(LOCK) + ": another process has held it for " + WRITER_WAIT.toSeconds()
                    + " s; wait for it to finish, or stop it");
        }
        return l;
    }

    /** Takes {@code dir}'s lock if it becomes free within {@code wait}; null if it does not. */
    public static Lock tryLock(Path dir, Duration wait) throws IOException {
        Path file = dir.toRealPath().resolve(LOCK);
        long deadline = System.nanoTime() + wait.toNanos();
        while (true) {
            if (HELD.add(file)) {
                FileChannel ch = null;
                try {
                    ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                    FileLock fl = ch.tryLock();
                    if (fl != null) return new Lock(file, ch);
                    ch.close();
                    HELD.remove(file);
                } catch (IOException | RuntimeException e) {
                    if (ch != null) ch.close();
                    HELD.remove(file);
                    throw new IOException(file + ": cannot lock (" + (e instanceof IOException io ? AtomicFiles.reason(io) : e) + ")", e);
                }
            }
            if (System.nanoTime() - deadline >= 0) return null;
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while waiting for " + file);
            }
        }
    }
}
