package dev.dsmoe.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.HeapArrays;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link Trainer#footprint} against what a trainer holds after running. */
class TrainerFootprintTest {

    @TempDir
    Path dir;

    /**
     * A trainer that has run holds the estimate less the token-id arrays, which live on the
     * loop's stack (four of batch x seq ints: a step's and a validation pass's).
     */
    @Test
    void estimateIsWhatATrainerHolds() throws IOException {
        ModelConfig c = TrainerTest.tiny();
        Trainer.Options o = TrainerTest.options(2, 0);
        for (boolean resume : new boolean[] {false, true}) {
            Path out = dir.resolve("run");
            Trainer t = resume
                    ? Trainer.resume(out, TrainerTest.options(3, 0), new TrainerTest.Windows(TrainerTest.corpus(), 1),
                            new TrainerTest.Windows(TrainerTest.corpus(), 2), out, null, "test", "fp")
                    : Trainer.fresh(c, o, new TrainerTest.Windows(TrainerTest.corpus(), 1),
                            new TrainerTest.Windows(TrainerTest.corpus(), 2), out, null, "test", "fp");
            t.run(new Trainer.Listener() {});
            long held = HeapArrays.bytes(t, x -> x instanceof BatchSource || x instanceof ModelConfig || x instanceof ParamLayout);
            long stack = 4L * Integer.BYTES * o.batch() * o.seqLen();
            long params = 4L * ParamLayout.of(c).totalSize();
            // A resume also reads the moments into two buffers that are garbage once copied.
            Footprint f = Trainer.footprint(c, o.batch(), o.seqLen(), resume);
            assertEquals(held + stack + (resume ? 2 * params : 0), f.heapBytes(), "resume " + resume);
            assertTrue(f.largest(Footprint.Where.HEAP).getFirst().what().startsWith("parameters"));
        }
    }
}
