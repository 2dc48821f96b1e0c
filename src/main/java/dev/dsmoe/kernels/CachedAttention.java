package dev.dsmoe.kernels;

/**
 * Attention of query rows against a paged key/value cache, for inference (prefill and decode,
 * one sequence or many): each query row has its own position p and its own sequence's cache, and
 * attends causally to that cache's positions {@code [0, p]}.
 *
 * <p>For row r, query head h (of {@code heads}) with KV head {@code g = kvHeadOf[h]} and
 * {@code p = positions[posOff + r]}:
 * <pre>
 *   out[r, h] = Σ_{j &lt;= p} softmax_j( q[r, h] · k[j, g] / sqrt(D) ) · v[j, g]
 * </pre>
 * The cache is paged, as in vLLM's paged attention: position j of row r's sequence lives in block
 * {@code tables[r][j / blockSize]}, a {@code float[]} in which the keys of a block's positions
 * start at {@code kOff} and its values at {@code vOff}, {@code kvStride} floats per position
 * ({@code Hkv·D}, keys already rotated by RoPE). q and out are rows of {@code heads·D} at the
 * given strides. The softmax is computed online a cache block at a time (running maximum and sum,
 * the accumulator rescaled when a block raises the maximum), with one block of scores in a
 * per-thread scratch, so nothing is allocated per call. Work
 * is split over (row, KV head) pairs, each computing the query heads that share that KV head;
 * each head's output depends on its own row only, never on the other rows of the call.
 */
public final class CachedAttention {

    private CachedAttention() {}

    /**
     * @param tables    each row's block table (row r: {@code tables[r]}); blocks hold keys and values
     * @param blockSize positions per block, a power of two
     */
    public static void forward(float[] q, int qOff, int qStride, int rows, int heads, int[] kvHeadOf,
                               float[][][] tables, int kOff, int vOff, int blockSize, int kvStride, int D,
                               int[] positions, int posOff, float[] out, int outOff, int outStride) {
        if (rows < 0 || heads < 0 || D <= 0) throw new IllegalArgumentException("need rows, heads >= 0 and D > 0");
        if (blockSize < 1 || Integer.bitCount(blockSize) != 1) {
            throw new IllegalArgumentException("block size must be a power of two, got " + blockSize);
        }
        if (kvHeadOf.length < heads) throw new IllegalArgumentException("kvHeadOf has fewer than " + heads + " entries");
        if (rows == 0 || heads == 0) return;
        int maxKv = 0;
        for (int h = 0; h < heads; h++) maxKv = Math.max(maxKv, kvHeadOf[h]);
        long kvExtent = (blockSize - 1L) * kvStride + (maxKv + 1L) * D;
        int maxPos = 0;
        for (int r = 0; r < rows; r++) {
            int p = positions[posOff + r];
            if (p < 0) throw new IllegalArgumentException("negative position " + p + " for row " + r);
            maxPos = Math.max(maxPos, p);
            float[][] table = tables[r];
            if (table == null || table.length <= p / blockSize) {
                throw new IllegalArgumentException("row " + r + ": no cache block for position " + p);
            }
            for (int b = 0; b <= p / blockSize; b++) {
                Simd.checkRange("k", table[b], kOff, kvExtent);
                Simd.checkRange("v", table[b], vOff, kvExtent);
            }
        }
        Simd.checkRange("q", q, qOff, Simd.extent(rows, qStride, (long) heads * D));
        Simd.checkRange("out", out, outOff, Simd.extent(rows, outStride, (long) heads * D));
        float scale = (float) (1.0 / Math.sqrt(D));
        int shift = Integer.numberOfTrailingZeros(blockSize);
        int groups = maxKv + 1, perGroup = Math.max(1, heads / groups);
        int grain = Math.max(1, Simd.MIN_CHUNK / ((maxPos + 1) * 4 * D * perGroup));
        Parallel.forRange(rows * groups, grain, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                int r = i / groups, g = i % groups;
                group(q, qOff + r * qStride, heads, kvHeadOf, g, tables[r], kOff + g * D, vOff + g * D, shift, kvStride, D,
                        positions[posOff + r], scale, out, outOff + r * outStride);
            }
        });
    }

    /** Each thread's scores of one cache block per head, then each head's running maximum and sum. */
    private static final ThreadLocal<float[][]> SCRATCH = ThreadLocal.withInitial(() -> new float[][] {new float[0]});

    /*
     * One row's query heads that share KV head g, together: cache block by cache block, each
     * key row is read once for all of them (their dot products into the thread's scratch) and
     * each value row once (their weighted sums); per head, one rescale of its running sum and
     * output if the block raised its maximum, and the block's exponentials in one vector pass
     * (Simd's polynomial exp, the same in every JIT state). Reading K and V once per group
     * instead of once per head, and no scalar exp or maximum test per position, made prefill's
     * attention several times faster. A head's arithmetic is the same whatever the group holds.
     */
    private static void group(float[] q, int qo, int heads, int[] kvHeadOf, int g, float[][] table, int ko, int vo,
                              int shift, int kvStride, int D, int p, float scale, float[] out, int oo) {
        int blockSize = 1 << shift;
        float[][] holder = SCRATCH.get();
        int need = heads * (blockSize + 2);
        if (holder[0].length < need) holder[0] = new float[need];
        float[] s = holder[0];
        int maxAt = heads * blockSize, sumAt = maxAt + heads;
        for (int h = 0; h < heads; h++) {
            if (kvHeadOf[h] != g) continue;
            s[maxAt + h] = Float.NEGATIVE_INFINITY;
            s[sumAt + h] = 0f;
            Simd.zero(out, oo + h * D, D);
        }
        for (int j0 = 0; j0 <= p; j0 += blockSize) {
            float[] block = table[j0 >> shift];
            int n = Math.min(p - j0 + 1, blockSize);
            for (int i = 0; i < n; i++) {
                int k = ko + i * kvStride;
                for (int h = 0; h < heads; h++) {
                    if (kvHeadOf[h] == g) s[h * blockSize + i] = Simd.dot(q, qo + h * D, block, k, D) * scale;
                }
            }
            for (int h = 0; h < heads; h++) {
                if (kvHeadOf[h] != g) continue;
                int so = h * blockSize;
                float blockMax = Float.NEGATIVE_INFINITY, max = s[maxAt + h];
                for (int i = 0; i < n; i++) if (s[so + i] > blockMax) blockMax = s[so + i];
                if (blockMax > max) {
                    float corr = Simd.exp(max - blockMax); // 0 for the first block
                    s[sumAt + h] *= corr;
                    Simd.scale(out, oo + h * D, out, oo + h * D, D, corr);
                    s[maxAt + h] = max = blockMax;
                }
                s[sumAt + h] += Simd.expShiftStore(s, so, s, so, n, max);
            }
            for (int i = 0; i < n; i++) {
                int v = vo + i * kvStride;
                for (int h = 0; h < heads; h++) {
                    if (kvHeadOf[h] == g) Simd.axpy(s[h * blockSize + i], block, v, out, oo + h * D, D);
                }
            }
        }
        for (int h = 0; h < heads; h++) {
            if (kvHeadOf[h] == g) Simd.scale(out, oo + h * D, out, oo + h * D, D, 1f / s[sumAt + h]);
        }
    }
}
