package dev.dsmoe.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.RandomParams;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelFilesTest {

    @TempDir
    Path dir;

    static ModelConfig tiny() {
        return ModelPresets.get("dsmoe-small").toBuilder().vocabSize(40).dEmb(16).numLayers(1)
                .nAtt(2).nHead(2).nKv(2).dAtt(4).nFfd(2).dFfd(8).maxPositions(16).build().validate();
    }

    // The two checkpoints differ in a key that does not change any shape, so a mix would load silently.
    static final ModelConfig OLD = tiny();
    static final ModelConfig NEW = tiny().toBuilder().ropeTheta(500000.0).build();
    static final float[] OLD_PARAMS = RandomParams.params(ParamLayout.of(OLD), 1);
    static final float[] NEW_PARAMS = RandomParams.params(ParamLayout.of(NEW), 2);

    /** The old checkpoint committed, then the new one as a writer killed after its first rename leaves it. */
    private void newCheckpointKilledMidCommit() throws IOException {
        new CheckpointFiles(dir).text(ModelFiles.CONFIG, ConfigJson.toJson(OLD))
                .safetensors(ModelFiles.MODEL, ModelFiles.modelTensors(ParamLayout.of(OLD), OLD_PARAMS, SafeTensors.DType.F32))
                .commit();
        byte[] cfg = ConfigJson.toJson(NEW).getBytes(StandardCharsets.UTF_8);
        List<AtomicFiles.Temp> temps = List.of(
                ModelFiles.modelTensors(ParamLayout.of(NEW), NEW_PARAMS, SafeTensors.DType.F32).writeTemp(dir.resolve(ModelFiles.MODEL)),
                AtomicFiles.writeTemp(dir.resolve(ModelFiles.CONFIG), ch -> ch.write(ByteBuffer.wrap(cfg))));
        CheckpointFiles.writeJournal(dir, temps);
        temps.get(0).commit(); // model.safetensors is new, config.json still old
        for (AtomicFiles.Temp t : temps) t.abandon();
    }

    private static float[] weights(SafeTensors st, ParamLayout layout) throws IOException {
        float[] p = layout.newBuffer();
        for (ParamLayout.Tensor t : layout.tensors()) st.readFloats(t.name(), t.shape(), p, t.off());
        return p;
    }

    @Test
    void aCheckpointLeftMidCommitIsReadAsTheNewOneNeverAMix() throws IOException {
        newCheckpointKilledMidCommit();
        try (ModelFiles.Checkpoint c = ModelFiles.openCheckpoint(dir)) {
            assertEquals(NEW, c.config());
            assertArrayEquals(NEW_PARAMS, weights(c.model(), ParamLayout.of(c.config())));
        }
        assertTrue(Files.notExists(dir.resolve(CheckpointFiles.JOURNAL)), "the reader finished the save");
    }

    @Test
    void theTrainingSideReadsTheSameCheckpoint() throws IOException {
        newCheckpointKilledMidCommit();
        ModelConfig c = ModelFiles.readConfig(dir);
        assertEquals(NEW, c);
        assertArrayEquals(NEW_PARAMS, ModelFiles.readParams(dir, ParamLayout.of(c)));
    }

    @Test
    void aMidCommitDirectoryThatCannotBeRepairedIsRefusedInOneLine() throws IOException {
        newCheckpointKilledMidCommit();
        String configBefore = Files.readString(dir.resolve(ModelFiles.CONFIG));
        IOException e;
        try (CheckpointFiles.Lock held = CheckpointFiles.tryLock(dir, Duration.ZERO)) {
            assertNotNull(held);
            e = assertThrows(IOException.class, () -> ModelFiles.openCheckpoint(dir).close());
        }
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
        assertTrue(e.getMessage().contains("run 'dsmoe train --resume " + dir + "'"), e.getMessage());
        assertTrue(e.getMessage().contains("another process holds " + CheckpointFiles.LOCK), e.getMessage());
        assertTrue(Files.exists(dir.resolve(CheckpointFiles.JOURNAL)), "left for the repair");
        assertEquals(configBefore, Files.readString(dir.resolve(ModelFiles.CONFIG)));
    }

    @Test
    void aReadOnlyMidCommitDirectoryIsRefusedInOneLine() throws IOException {
        assumeTrue(!"root".equals(System.getProperty("user.name")), "root writes to read-only directories");
        newCheckpointKilledMidCommit();
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("r-xr-xr-x"));
        try {
            IOException e = assertThrows(IOException.class, () -> ModelFiles.readConfig(dir));
            assertEquals(1, e.getMessage().lines().count(), e.getMessage());
            assertTrue(e.getMessage().contains("not writable"), e.getMessage());
            assertTrue(e.getMessage().contains("train --resume"), e.getMessage());
        } finally {
            Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
    }

    @Test
    void aTensorOfTheWrongShapeOrTypeIsNamedWithWhatConfigJsonExpects() throws IOException {
        ModelConfig small = tiny(), wide = tiny().toBuilder().nFfd(2).dFfd(12).build();
        ParamLayout layout = ParamLayout.of(small);
        float[] p = RandomParams.params(layout, 3);
        Files.writeString(dir.resolve(ModelFiles.CONFIG), ConfigJson.toJson(wide));
        ModelFiles.modelTensors(layout, p, SafeTensors.DType.F32).write(dir.resolve(ModelFiles.MODEL));
        ModelFiles.optimizerTensors(layout, p, p, 5).write(dir.resolve(ModelFiles.OPTIMIZER));
        ParamLayout expected = ParamLayout.of(ModelFiles.readConfig(dir));
        IOException e = assertThrows(IOException.class, () -> ModelFiles.readParams(dir, expected));
        assertTrue(e.getMessage().endsWith("model.safetensors: tensor model.layers.0.mlp.up_proj.weight has shape [2, 8, 16], "
                + "config.json expects [2, 12, 16]"), e.getMessage());
        e = assertThrows(IOException.class, () -> ModelFiles.readOptimizer(dir, expected, expected.newBuffer(), expected.newBuffer()));
        assertTrue(e.getMessage().contains("optimizer.safetensors: tensor exp_avg"), e.getMessage());
        assertTrue(e.getMessage().contains("config.json expects"), e.getMessage());

        // Right shapes, but integers where weights should be: named too.
        SafeTensors.Writer w = new SafeTensors.Writer();
        for (ParamLayout.Tensor t : layout.tensors()) w.add(t.name(), SafeTensors.DType.F32, t.shape(), p, t.off());
        Path f = dir.resolve("ints.safetensors");
        w.write(f);
        byte[] b = Files.readAllBytes(f);
        String bytes = new String(b, StandardCharsets.ISO_8859_1);
        String norm = "\"model.norm.weight\":{\"dtype\":\"F32\"";
        assertTrue(bytes.contains(norm), "the writer's header layout");
        Files.write(f, bytes.replace(norm, "\"model.norm.weight\":{\"dtype\":\"I32\"").getBytes(StandardCharsets.ISO_8859_1));
        e = assertThrows(IOException.class, () -> ModelFiles.readTensors(f, layout, java.util.Map.of("", layout.newBuffer())));
        assertTrue(e.getMessage().endsWith("ints.safetensors: tensor model.norm.weight has dtype I32, config.json's model needs "
                + "floating point (F32, BF16 or F16)"), e.getMessage());
    }

    @Test
    void aReaderRacingASaveGetsOneWholeCheckpoint() throws Exception {
        new CheckpointFiles(dir).text(ModelFiles.CONFIG, ConfigJson.toJson(OLD))
                .safetensors(ModelFiles.MODEL, ModelFiles.modelTensors(ParamLayout.of(OLD), OLD_PARAMS, SafeTensors.DType.F32))
                .commit();
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
        Thread writer = Thread.ofPlatform().start(() -> {
            try {
                for (int i = 0; !stop.get(); i++) {
                    ModelConfig c = i % 2 == 0 ? NEW : OLD;
                    new CheckpointFiles(dir).text(ModelFiles.CONFIG, ConfigJson.toJson(c))
                            .safetensors(ModelFiles.MODEL, ModelFiles.modelTensors(ParamLayout.of(c), c == NEW ? NEW_PARAMS : OLD_PARAMS,
                                    SafeTensors.DType.F32))
                            .commit();
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        int reads = 0;
        try {
            long end = System.nanoTime() + 2_000_000_000L;
            while (System.nanoTime() < end && failure.get() == null) {
                try (ModelFiles.Checkpoint c = ModelFiles.openCheckpoint(dir)) {
                    float[] w = weights(c.model(), ParamLayout.of(c.config()));
                    assertArrayEquals(c.config().equals(NEW) ? NEW_PARAMS : OLD_PARAMS, w, "config.json and weights of one save");
                }
                reads++;
            }
        } finally {
            stop.set(true);
            writer.join();
        }
        assertEquals(null, failure.get());
        assertTrue(reads > 10, "reads: " + reads);
    }
}
