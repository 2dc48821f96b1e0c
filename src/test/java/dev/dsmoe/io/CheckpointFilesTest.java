package dev.dsmoe.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointFilesTest {

    @TempDir
    Path dir;

    @Test
    void commitReplacesAllFilesAndLeavesNoTemporaries() throws IOException {
        new CheckpointFiles(dir).text("a.json", "1").text("b.json", "1").commit();
        new CheckpointFiles(dir).text("a.json", "2").text("b.json", "2").commit();
        assertEquals("2", Files.readString(dir.resolve("a.json")));
        assertEquals("2", Files.readString(dir.resolve("b.json")));
        try (var s = Files.list(dir)) {
            assertEquals(2, s.count(), "only the two files remain");
        }
    }

    @Test
    void recoveryRollsForwardACommittedChange() throws IOException {
        new CheckpointFiles(dir).text("a.json", "old").text("b.json", "old").commit();
        // Simulate a kill after the journal was written and a.json renamed, before b.json was.
        Files.writeString(dir.resolve("b.json.tmp"), "new");
        Files.writeString(dir.resolve("a.json"), "new");
        Files.writeString(dir.resolve(CheckpointFiles.JOURNAL), "a.json\nb.json\n");
        assertTrue(CheckpointFiles.recover(dir));
        assertEquals("new", Files.readString(dir.resolve("a.json")));
        assertEquals("new", Files.readString(dir.resolve("b.json")));
        assertFalse(Files.exists(dir.resolve(CheckpointFiles.JOURNAL)));
    }

    @Test
    void recoveryDropsAnUncommittedChange() throws IOException {
        new CheckpointFiles(dir).text("a.json", "old").commit();
        Files.writeString(dir.resolve("a.json.tmp"), "half-writ");
        assertTrue(CheckpointFiles.recover(dir));
        assertEquals("old", Files.readString(dir.resolve("a.json")));
        assertFalse(Files.exists(dir.resolve("a.json.tmp")));
        assertFalse(CheckpointFiles.recover(dir), "nothing left to repair");
    }
}
