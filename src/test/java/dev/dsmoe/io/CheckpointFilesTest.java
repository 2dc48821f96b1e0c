package dev.dsmoe.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointFilesTest {

    @TempDir
    Path dir;

    /** The directory's files, less the lock file (which stays by design). */
    private List<String> names() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> !n.equals(CheckpointFiles.LOCK)).sorted().toList();
        }
    }

    /**
     * Leaves {@code dir} as a writer killed during the commit leaves it: new a.json and b.json
     * written to temporary files, the journal written, and only the first {@code renamed} renamed.
     */
    static void killedMidCommit(Path dir, int renamed, String... nameThenText) throws IOException {
        List<AtomicFiles.Temp> temps = new java.util.ArrayList<>();
        for (int i = 0; i < nameThenText.length; i += 2) {
            byte[] b = nameThenText[i + 1].getBytes(StandardCharsets.UTF_8);
            temps.add(AtomicFiles.writeTemp(dir.resolve(nameThenText[i]), ch -> ch.write(ByteBuffer.wrap(b))));
        }
        CheckpointFiles.writeJournal(dir, temps);
        for (int i = 0; i < renamed; i++) temps.get(i).commit();
        for (AtomicFiles.Temp t : temps) t.abandon(); // the process is gone: locks released, files stay
    }

    @Test
    void commitReplacesAllFilesAndLeavesNoTemporaries() throws IOException {
        new CheckpointFiles(dir).text("a.json", "1").text("b.json", "1").commit();
        new CheckpointFiles(dir).text("a.json", "2").text("b.json", "2").commit();
        assertEquals("2", Files.readString(dir.resolve("a.json")));
        assertEquals("2", Files.readString(dir.resolve("b.json")));
        assertEquals(List.of("a.json", "b.json"), names(), "only the two files remain");
    }

    @Test
    void recoveryRollsForwardACommittedChange() throws IOException {
        new CheckpointFiles(dir).text("a.json", "old").text("b.json", "old").commit();
        killedMidCommit(dir, 1, "a.json", "new", "b.json", "new");
        assertEquals("new", Files.readString(dir.resolve("a.json")));
        assertEquals("old", Files.readString(dir.resolve("b.json")));
        assertTrue(CheckpointFiles.recover(dir));
        assertEquals("new", Files.readString(dir.resolve("a.json")));
        assertEquals("new", Files.readString(dir.resolve("b.json")));
        assertEquals(List.of("a.json", "b.json"), names(), "journal and temporary files gone");
    }

    @Test
    void recoveryFinishesAJournalOfTheEarlierFormat() throws IOException {
        // Before temporary names were unique the journal listed targets and each had "NAME.tmp".
        new CheckpointFiles(dir).text("a.json", "old").text("b.json", "old").commit();
        Files.writeString(dir.resolve("b.json.tmp"), "new");
        Files.writeString(dir.resolve("a.json"), "new");
        Files.writeString(dir.resolve(CheckpointFiles.JOURNAL), "a.json\nb.json\n");
        assertTrue(CheckpointFiles.recover(dir));
        assertEquals("new", Files.readString(dir.resolve("a.json")));
        assertEquals("new", Files.readString(dir.resolve("b.json")));
        assertFalse(Files.exists(dir.resolve(CheckpointFiles.JOURNAL)));
    }

    @Test
    void recoveryDropsAnUncommittedChangeAndNothingElse() throws IOException {
        new CheckpointFiles(dir).text("a.json", "old").commit();
        Files.writeString(dir.resolve(".a.json.dsmoe-00000000deadbeef.tmp"), "half-writ");
        Files.writeString(dir.resolve("notes.tmp"), "a user's file");
        Files.writeString(dir.resolve("a.json.tmp"), "another user's file");
        assertTrue(CheckpointFiles.recover(dir));
        assertEquals("old", Files.readString(dir.resolve("a.json")));
        assertEquals(List.of("a.json", "a.json.tmp", "notes.tmp"), names());
        assertFalse(CheckpointFiles.recover(dir), "nothing left to repair");
        new CheckpointFiles(dir).text("a.json", "new").commit();
        assertEquals(List.of("a.json", "a.json.tmp", "notes.tmp"), names(), "a save leaves them too");
    }

    @Test
    void aJournalNamingFilesOutsideItsDirectoryIsRefused() throws IOException {
        Files.writeString(dir.resolve(CheckpointFiles.JOURNAL),
                "{\"format\":1,\"files\":[{\"temp\":\"../x\",\"target\":\"a.json\"}]}");
        IOException e = assertThrows(IOException.class, () -> CheckpointFiles.recover(dir));
        assertTrue(e.getMessage().contains("not a file of its directory"), e.getMessage());
        Files.writeString(dir.resolve(CheckpointFiles.JOURNAL),
                "{\"format\":1,\"files\":[{\"temp\":\".b.json.dsmoe-0123456789abcdef.tmp\",\"target\":\"a.json\"}]}");
        e = assertThrows(IOException.class, () -> CheckpointFiles.recover(dir));
        assertTrue(e.getMessage().contains("is not a temporary file of its target"), e.getMessage());
    }

    @Test
    void theLockExcludesOtherProcessesAndThreadsUntilReleased() throws IOException {
        try (CheckpointFiles.Lock l = CheckpointFiles.tryLock(dir, Duration.ZERO)) {
            assertNull(CheckpointFiles.tryLock(dir, Duration.ofMillis(50)), "held in this process");
        }
        try (LockHolder other = LockHolder.start("dir", dir)) {
            assertNull(CheckpointFiles.tryLock(dir, Duration.ofMillis(50)), "held by another process");
        }
        try (CheckpointFiles.Lock l = CheckpointFiles.tryLock(dir, Duration.ofSeconds(5))) {
            assertTrue(l != null, "free once its holder is gone");
        }
    }
}
