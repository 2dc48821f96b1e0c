package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.io.CheckpointFiles;
import dev.dsmoe.io.ModelFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What training and the readers do to the files of a run directory they did not write. */
class RunDirectoryFilesTest {

    @TempDir
    static Path shared;
    static Path data;

    @TempDir
    Path dir;

    @BeforeAll
    static void prepare() throws IOException {
        data = TrainCommandTest.prepareData(shared);
    }

    @Test
    void aUsersTmpFilesSurviveTrainingAndResume() throws IOException {
        Path out = Files.createDirectories(dir.resolve("run"));
        List<String> users = List.of("notes.tmp", "model.safetensors.tmp", ".config.json.tmp");
        for (String f : users) Files.writeString(out.resolve(f), "the user's " + f);
        PrepareCommandTest.Run first = PrepareCommandTest.run(TrainCommandTest.argsFor(data, "--out", out.toString(), "--steps", "2",
                "--stop-after", "1"));
        assertEquals(0, first.status(), first.err());
        PrepareCommandTest.Run second = PrepareCommandTest.run("train", "--resume", out.toString(), "--seq", "16", "--batch", "2");
        assertEquals(0, second.status(), second.err());
        for (String f : users) assertEquals("the user's " + f, Files.readString(out.resolve(f)), f);
    }

    @Test
    void readersFinishAnInterruptedSaveOrRefuseInOneLine() throws IOException {
        Path out = dir.resolve("run");
        PrepareCommandTest.Run trained = PrepareCommandTest.run(TrainCommandTest.argsFor(data, "--out", out.toString(), "--steps", "1"));
        assertEquals(0, trained.status(), trained.err());
        // A save killed after its journal was written, before config.json was renamed.
        String tmp = ".config.json.dsmoe-0123456789abcdef.tmp";
        Files.copy(out.resolve(ModelFiles.CONFIG), out.resolve(tmp));
        Files.writeString(out.resolve(CheckpointFiles.JOURNAL),
                "{\"format\":1,\"files\":[{\"temp\":\"" + tmp + "\",\"target\":\"config.json\"}]}\n");
        String[] generate = {"generate", "--model", out.toString(), "--prompt", "class", "--max-tokens", "2"};
        try (CheckpointFiles.Lock busy = CheckpointFiles.tryLock(out, Duration.ZERO)) {
            assertNotNull(busy);
            TrainCommandTest.assertOneLineError(PrepareCommandTest.run(generate), "run 'dsmoe train --resume " + out + "' on it");
            TrainCommandTest.assertOneLineError(PrepareCommandTest.run("eval", "--model", out.toString(), "--max-tokens", "8"),
                    "train --resume");
        }
        assertTrue(Files.exists(out.resolve(tmp)), "nothing changed while refused");
        PrepareCommandTest.Run r = PrepareCommandTest.run(generate);
        assertEquals(0, r.status(), r.err());
        assertFalse(Files.exists(out.resolve(CheckpointFiles.JOURNAL)), "the reader finished the save");
        assertFalse(Files.exists(out.resolve(tmp)));
    }
}
