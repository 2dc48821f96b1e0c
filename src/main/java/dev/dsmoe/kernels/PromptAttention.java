package dev.dsmoe.kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Causal attention of a prompt chunk's query rows against their one sequence's paged cache by two
 * matrix products per block of queries (oneDNN, fp32), the compute-bound form of
 * {@link CachedAttention}'s mathematics (same inputs, same result up to summation order):
 * <pre>
 *   S = Q·Kᵀ / sqrt(D),   P = softmax over the causal positions,   out = P·V
 * </pre>
 * For each KV head g the cache's keys and values of positions {@code [0, L)} are gathered once
 * into contiguous native buffers; the queries on g (every (row, head) with {@code kvHeadOf[head]
 * = g}) are taken in ascending position and cut into blocks of {@link #QUERIES}; a block attends
 * to the positions up to its last query's (rounded up to {@link #KEYS}), each query masked to its
 * own. The threads pull (KV head, block) pairs. A query's result depends on its sequence's cache
 * and its own position only... and on the block it shares (the product's row count and key
 * extent): blocks are made from the chunk's own rows, so a sequence's result does not depend on
 * what else is in a step (batch invariance holds per chunk, as for the weight products).
 */
public final class PromptAttention {

    /** Queries per product: a [128 x L] score block stays in L2 at the context lengths of the presets. */
    static final int QUERIES = 128;
    /** Key extents are rounded up to a multiple of this (fewer distinct products to create). */
    static final int KEYS = 64;

    private PromptAttention() {}

    /** One thread's native operands and heap scores. */
    private static final class Scratch {
        MemorySegment k = MemorySegment.NULL, v = MemorySegment.NULL, q = MemorySegment.NULL, s = MemorySegment.NULL,
                o = MemorySegment.NULL;
        float[] scores = new float[0];
        int[] order = new int[0], count = new int[0];

        static MemorySegment grow(MemorySegment have, long bytes) {
            return have.byteSize() >= bytes ? have : Arena.ofAuto().allocate(Math.max(bytes, have.byteSize() * 3 / 2), 64);
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /**
     * Attention of rows {@code rowList[0 .. n)} (indices into q, out and positions), all of one
     * sequence whose cache is {@code table}; other arguments as {@link CachedAttention#forward}.
     */
    public static void forward(OneDnn dnn, float[] q, int qOff, int qStride, int[] rowList, int n, int heads, int[] kvHeadOf,
                               float[][] table, int kOff, int vOff, int blockSize, int kvStride, int D, int[] positions,
                               float[] out, int outOff, int outStride) {
        if (n == 0 || heads == 0) return;
        if (blockSize < 1 || Integer.bitCount(blockSize) != 1) {
            throw new IllegalArgumentException("block size must be a power of two, got " + blockSize);
        }
        int maxKv = 0, maxPos = 0, minPos = Integer.MAX_VALUE;
        for (int h = 0; h < heads; h++) maxKv = Math.max(maxKv, kvHeadOf[h]);
        for (int i = 0; i < n; i++) {
            int p = positions[rowList[i]];
            if (p < 0) throw new IllegalArgumentException("negative position " + p);
            maxPos = Math.max(maxPos, p);
            minPos = Math.min(minPos, p);
        }
        if (table.length <= maxPos / blockSize) throw new IllegalArgumentException("no cache block for position " + maxPos);
        int kvHeads = maxKv + 1, L = maxPos + 1, lPad = (L + KEYS - 1) / KEYS * KEYS;
        Scratch main = SCRATCH.get();
        // rows in ascending position (a counting sort; stable, so equal positions keep list order)
        int span = maxPos - minPos + 1;
        if (main.order.length < n) main.order = new int[n];
        if (main.count.length < span + 1) main.count = new int[span + 1];
        int[] order = main.order, count = main.count;
        java.util.Arrays.fill(count, 0, span + 1, 0);
        for (int i = 0; i < n; i++) count[positions[rowList[i]] - minPos + 1]++;
        for (int p = 0; p < span; p++) count[p + 1] += count[p];
        for (int i = 0; i < n; i++) order[count[positions[rowList[i]] - minPos]++] = rowList[i];
        // keys and values of every KV head, gathered once: [kvHeads][lPad][D], padding rows zero
        long kvBytes = 4L * kvHeads * lPad * D;
        main.k = Scratch.grow(main.k, kvBytes);
        main.v = Scratch.grow(main.v, kvBytes);
        MemorySegment keys = main.k, values = main.v;
        int shift = Integer.numberOfTrailingZeros(blockSize), mask = blockSize - 1;
        for (int g = 0; g < kvHeads; g++) {
            long base = 4L * g * lPad * D;
            for (int j = 0; j < L; j++) {
                float[] block = table[j >> shift];
                int at = (j & mask) * kvStride + g * D;
                MemorySegment.copy(block, kOff + at, keys, ValueLayout.JAVA_FLOAT, base + 4L * j * D, D);
                MemorySegment.copy(block, vOff + at, values, ValueLayout.JAVA_FLOAT, base + 4L * j * D, D);
            }
            keys.asSlice(base + 4L * L * D, 4L * (lPad - L) * D).fill((byte) 0);
            values.asSlice(base + 4L * L * D, 4L * (lPad - L) * D).fill((byte) 0);
        }
        if (!grouped(kvHeadOf, heads)) throw new IllegalArgumentException("query heads must be grouped by KV head, in equal groups");
        int perG = heads / kvHeads;
        int queries = n * perG, blocks = (queries + QUERIES - 1) / QUERIES;
        float scale = (float) (1.0 / Math.sqrt(D));
        Parallel.forChunks(kvHeads * blocks, 1, (u0, u1) -> {
            Scratch t = SCRATCH.get();
            for (int u = u0; u < u1; u++) {
                int g = u / blocks, b = u % blocks, i0 = b * QUERIES, m = Math.min(QUERIES, queries - i0);
                int mp = (m + OneDnn.ROW_STEP - 1) / OneDnn.ROW_STEP * OneDnn.ROW_STEP;
                int last = order[(i0 + m - 1) / perG], lb = (positions[last] + 1 + KEYS - 1) / KEYS * KEYS;
                t.q = Scratch.grow(t.q, 4L * mp * D);
                t.s = Scratch.grow(t.s, 4L * mp * lb);
                t.o = Scratch.grow(t.o, 4L * mp * D);
                if (t.scores.length < lb) t.scores = new float[lb];
                for (int i = 0; i < m; i++) { // query i: row order[(i0+i)/perG], head g·perG + (i0+i)%perG (heads grouped)
                    int qi = i0 + i, row = order[qi / perG], h = g * perG + qi % perG;
                    MemorySegment.copy(q, qOff + row * qStride + h * D, t.q, ValueLayout.JAVA_FLOAT, 4L * i * D, D);
                }
                long kvBase = 4L * g * lPad * D;
                dnn.nativeF32(t.q, mp, keys.asSlice(kvBase), D, false, lb, D, t.s);
                float[] sc = t.scores;
                for (int i = 0; i < m; i++) {
                    int qi = i0 + i, valid = positions[order[qi / perG]] + 1;
                    long row = 4L * i * lb;
                    MemorySegment.copy(t.s, ValueLayout.JAVA_FLOAT, row, sc, 0, valid);
                    for (int j = 0; j < valid; j++) sc[j] *= scale;
                    float max = Simd.max(sc, 0, valid);
                    float sum = Simd.expShiftStore(sc, 0, sc, 0, valid, max), inv = 1f / sum;
                    for (int j = 0; j < valid; j++) sc[j] *= inv;
                    java.util.Arrays.fill(sc, valid, lb, 0f);
                    MemorySegment.copy(sc, 0, t.s, ValueLayout.JAVA_FLOAT, row, lb);
                }
                dnn.nativeF32(t.s, mp, values.asSlice(kvBase), D, true, D, lb, t.o);
                for (int i = 0; i < m; i++) {
                    int qi = i0 + i, row = order[qi / perG], h = g * perG + qi % perG;
                    MemorySegment.copy(t.o, ValueLayout.JAVA_FLOAT, 4L * i * D, out, outOff + row * outStride + h * D, D);
                }
            }
        });
    }

    /** Whether the query heads are in equal consecutive groups per KV head ({@code kvHeadOf[h] = h / (heads / kvHeads)}), as this kernel needs. */
    public static boolean grouped(int[] kvHeadOf, int heads) {
        int kvHeads = 0;
        for (int h = 0; h < heads; h++) kvHeads = Math.max(kvHeads, kvHeadOf[h] + 1);
        if (kvHeads == 0 || heads % kvHeads != 0) return false;
        for (int h = 0; h < heads; h++) if (kvHeadOf[h] != h / (heads / kvHeads)) return false;
        return true;
    }
}
