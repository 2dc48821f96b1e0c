package dev.dsmoe.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BatchSamplerTest {

    /** A shard holding 0, 1, 2, ..., n-1 (mod 65536), so each token tells its position. */
    static TokenShard counting(Path dir, int n) throws IOException {
        Path f = dir.resolve("count.bin");
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = i;
        try (ShardWriter w = new ShardWriter(f, TokenDtype.UINT16)) {
            w.write(ids, 0, n);
        }
        return TokenShard.open(f, TokenDtype.UINT16, n);
    }

    @Test
    void targetsAreInputsShiftedByOne(@TempDir Path dir) throws IOException {
        try (TokenShard s = counting(dir, 1000)) {
            BatchSampler sampler = BatchSampler.random(s, 4, 16, 7);
            Batch b = sampler.newBatch();
            for (int step = 0; step < 50; step++) {
                assertEquals(4, sampler.next(b));
                for (int row = 0; row < 4; row++) {
                    int start = b.inputs[row * 16];
                    assertTrue(start + 16 < 1000);
                    for (int t = 0; t < 16; t++) {
                        assertEquals(start + t, b.inputs[row * 16 + t]);
                        assertEquals(start + t + 1, b.targets[row * 16 + t]);
                    }
                }
            }
        }
    }

    @Test
    void randomWindowsDependOnlyOnSeedAndStep(@TempDir Path dir) throws IOException {
        try (TokenShard s = counting(dir, 5000)) {
            BatchSampler a = BatchSampler.random(s, 8, 32, 42);
            BatchSampler b = BatchSampler.random(s, 8, 32, 42);
            BatchSampler other = BatchSampler.random(s, 8, 32, 43);
            Batch x = a.newBatch();
            Batch y = b.newBatch();
            Batch z = other.newBatch();
            for (int i = 0; i < 10; i++) a.next(x);
            b.seek(9);
            b.next(y);
            assertArrayEquals(x.inputs, y.inputs);
            other.fill(9, z);
            assertFalse(Arrays.equals(x.inputs, z.inputs));
            // windows cover the shard: starts reach both ends over many steps
            int min = Integer.MAX_VALUE;
            int max = 0;
            for (int step = 0; step < 500; step++) {
                a.fill(step, x);
                for (int r = 0; r < 8; r++) {
                    min = Math.min(min, x.inputs[r * 32]);
                    max = Math.max(max, x.inputs[r * 32]);
                }
            }
            assertTrue(min < 50 && max > 5000 - 33 - 50, min + " .. " + max);
        }
    }

    @Test
    void sequentialCoversEachTokenOnceThenStops(@TempDir Path dir) throws IOException {
        try (TokenShard s = counting(dir, 1001)) {
            BatchSampler seq = BatchSampler.sequential(s, 3, 100);
            assertEquals(10, seq.windows());
            assertEquals(4, seq.steps());
            Batch b = seq.newBatch();
            int predicted = 0;
            int rows;
            while ((rows = seq.next(b)) > 0) {
                for (int r = 0; r < rows; r++) {
                    for (int t = 0; t < 100; t++) {
                        assertEquals(predicted + t, b.inputs[r * 100 + t], "input order");
                        assertEquals(predicted + t + 1, b.targets[r * 100 + t], "target order");
                    }
                    predicted += 100;
                }
                if (rows < 3) assertEquals(1, rows);
            }
            assertEquals(1000, predicted);
            assertEquals(0, seq.fill(99, b));
        }
    }

    @Test
    void shardShorterThanAWindowIsAClearError(@TempDir Path dir) throws IOException {
        try (TokenShard s = counting(dir, 10)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> BatchSampler.random(s, 1, 10, 1));
            assertTrue(e.getMessage().contains("fewer than one window"), e.getMessage());
        }
    }
}
