package dev.dsmoe.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AtomicFilesTest {

    @TempDir
    Path dir;

    private List<String> names() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    private static AtomicFiles.Content text(String s) {
        return ch -> ch.write(ByteBuffer.wrap(s.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void twoWritersOfOneTargetEachKeepTheirOwnContent() throws IOException {
        Path target = dir.resolve("model.safetensors");
        try (AtomicFiles.Temp a = AtomicFiles.writeTemp(target, text("first"));
             AtomicFiles.Temp b = AtomicFiles.writeTemp(target, text("second"))) {
            assertNotEquals(a.path(), b.path());
            assertTrue(AtomicFiles.isTemp(a.path()) && AtomicFiles.isTemp(b.path()), a.path() + " " + b.path());
            assertEquals(target, AtomicFiles.targetOf(a.path()));
            a.commit();
            assertEquals("first", Files.readString(target));
            b.commit();
            assertEquals("second", Files.readString(target));
        }
        assertEquals(List.of("model.safetensors"), names(), "no temporary file left");
    }

    @Test
    void concurrentWritersOfOneTargetNeverFailNorMix() throws Exception {
        Path target = dir.resolve("state.json");
        String a = "a".repeat(10_000), b = "b".repeat(10_000);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> threads = new ArrayList<>();
        for (String content : List.of(a, b)) {
            threads.add(Thread.ofPlatform().start(() -> {
                try {
                    for (int i = 0; i < 200 && failure.get() == null; i++) AtomicFiles.writeString(target, content);
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                }
            }));
        }
        for (Thread t : threads) t.join();
        assertEquals(null, failure.get(), () -> "a writer failed: " + failure.get());
        String last = Files.readString(target);
        assertTrue(last.equals(a) || last.equals(b), "whole content of one writer");
        assertEquals(List.of("state.json"), names());
    }

    @Test
    void aFullDiskNamesTheFileAndLeavesNoTemporary() throws IOException {
        Path target = dir.resolve("meta.json");
        Files.writeString(target, "old");
        IOException e = assertThrows(IOException.class, () -> AtomicFiles.write(target, ch -> {
            ch.write(ByteBuffer.wrap(new byte[100]));
            throw new IOException("No space left on device");
        }));
        assertTrue(e.getMessage().contains(target.toString()), "names the file: " + e.getMessage());
        assertTrue(e.getMessage().contains("No space left on device"), e.getMessage());
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
        assertEquals("old", Files.readString(target), "the old file is untouched");
        assertEquals(List.of("meta.json"), names(), "no temporary file left");
    }

    @Test
    void aFailedDirectorySyncIsReported() {
        Path missing = dir.resolve("gone");
        IOException e = assertThrows(IOException.class, () -> AtomicFiles.forceDirectory(missing));
        assertTrue(e.getMessage().startsWith(missing.toString()), e.getMessage());
    }

    @Test
    void staleCleanupRemovesOnlyTheProjectsTemporariesWhoseWriterIsGone() throws IOException {
        for (String user : List.of("notes.tmp", "a.json.tmp", ".a.json.tmp", ".a.json.dsmoe-notahexnumber.tmp")) {
            Files.writeString(dir.resolve(user), "mine");
        }
        Path stale = Files.writeString(dir.resolve(".a.json.dsmoe-0123456789abcdef.tmp"), "left by a kill");
        try (AtomicFiles.Temp live = AtomicFiles.writeTemp(dir.resolve("b.json"), text("being written"))) {
            try (LockHolder other = LockHolder.start("temp", dir.resolve("c.json"))) {
                assertEquals(1, AtomicFiles.removeStaleTemps(dir));
                assertFalse(Files.exists(stale));
                assertTrue(Files.exists(live.path()), "a temporary file open in this process is kept");
                assertTrue(Files.exists(Path.of(other.held())), "one held by another live process is kept");
            }
            assertEquals(1, AtomicFiles.removeStaleTemps(dir), "the dead process's temporary file goes");
            assertTrue(Files.exists(live.path()));
        }
        assertEquals(List.of(".a.json.dsmoe-notahexnumber.tmp", ".a.json.tmp", "a.json.tmp", "notes.tmp"), names());
    }
}
