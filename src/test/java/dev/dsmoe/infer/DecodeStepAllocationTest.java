package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.bench.InferenceBenchmarks;
import dev.dsmoe.bench.Timing;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.ThreadAllocation;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A decode step allocates no arrays and no boxed vectors: only the parallel regions' small lambda
 * objects, a fixed number per token, whatever the position or the expert selection. Measured on
 * every thread (the caller and the kernel workers), once warm.
 */
class DecodeStepAllocationTest {


    /** Least bytes per decoded token once warm, decoding 32 tokens after a prompt of {@code at}. */
    private static double bytesPerToken(Engine e, int at) {
        int[] prompt = new int[at];
        for (int i = 0; i < at; i++) prompt[i] = (i * 7) % 1000;
        return ThreadAllocation.settledLeastPerUnit(12, 32, () -> e.prefill(prompt), () -> {
            for (int t = 0; t < 32; t++) e.decode((t * 13) % 1000);
        });
    }

    /** Every weight format (a tile kernel that C2 does not fully inline boxes its vectors: Q8_0's did, 1.2 MB a token). */
    @ParameterizedTest(name = "{0}")
    @EnumSource(value = MatVec.DType.class)
    void decodeAllocatesAFixedFewKilobytesPerTokenForEverySelection(MatVec.DType dtype) throws Exception {
        try (InferenceModel m = InferenceBenchmarks.randomModel("dsmoe-small", dtype)) {
            for (String s : new String[] {"dense", "top-k:4", "top-k:att=1,mlp=2", "threshold:0.48"}) {
                Engine e = new Engine(m, ExpertSelection.parse(s, m.config()), 256, Engine.DEFAULT_CHUNK);
                // warm-up until the JIT is quiet: run alone (not after the suite's other tests), a
                // dtype's kernels were still compiling after a fixed warm-up and the early figure
                // read 18 KB against 5 KB late
                for (Timing.WarmUp w = new Timing.WarmUp(1); w.another(); ) bytesPerToken(e, 16);
                double early = bytesPerToken(e, 16), late = bytesPerToken(e, 200);
                String what = dtype + ", " + s + ": " + Math.round(early) + " B/token at position 16, " + Math.round(late) + " at 200";
                System.out.println("allocation per decoded token, " + what);
                assertTrue(Math.abs(late - early) < 256, "allocation grows with the position: " + what);
                assertTrue(late < 16 * 1024, "a decode step allocates too much: " + what);
            }
        }
    }
}
