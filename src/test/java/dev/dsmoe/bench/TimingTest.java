package dev.dsmoe.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class TimingTest {

    @Test
    void aWarmUpOfNoSecondsIsExactlyTheRunsAskedFor() {
        Timing.WarmUp w = new Timing.WarmUp(5, 0);
        int runs = 1;
        while (w.another()) runs++;
        assertEquals(5, runs);
    }

    @Test
    void theDefaultWarmUpLastsAtLeastItsSecondAndEnds() {
        long start = System.nanoTime();
        Timing.WarmUp w = new Timing.WarmUp(1);
        int runs = 1;
        while (w.another()) runs++;
        double seconds = (System.nanoTime() - start) / 1e9;
        assertTrue(seconds >= Timing.MIN_WARMUP_SECONDS, seconds + " s, " + runs + " runs"); // however short the runs
        assertTrue(seconds < Timing.MAX_WARMUP_SECONDS + 5, seconds + " s");
    }
}
