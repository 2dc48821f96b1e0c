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
 * given strides. The softmax is computed online (running maximum and sum, the accumulator
 * rescaled when the maximum grows), so no score buffer is needed and nothing is allocated. Work
 * is split over (row, head) pairs; each pair owns its output, and its result depends on its own
 * row only, never on the other rows of the call.
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
        int grain = Math.max(1, Simd.MIN_CHUNK / ((maxPos + 1) * 4 * D));
        Parallel.forRange(rows * heads, grain, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                int r = i / heads, h = i % heads;
                head(q, qOff + r * qStride + h * D, tables[r], kOff + kvHeadOf[h] * D, vOff + kvHeadOf[h] * D, shift,
                        kvStride, D, positions[posOff + r], scale, out, outOff + r * outStride + h * D);
            }
        });
    }

    private static void head(float[] q, int qo, float[][] table, int ko, int vo, int shift, int kvStride, int D, int p,
                             float scale, float[] out, int oo) {
        float max = Float.NEGATIVE_INFINITY, sum = 0f;
        Simd.zero(out, oo, D);
        int blockSize = 1 << shift;
        for (int j0 = 0; j0 <= p; j0 += blockSize) {
            float[] block = table[j0 >> shift];
            int end = Math.min(p - j0, blockSize - 1);
            for (int i = 0; i <= end; i++) {
                float s = Simd.dot(q, qo, block, ko + i * kvStride, D) * scale;
                if (s > max) {
                    float corr = (float) Math.exp(max - s); // 0 on the first position
                    sum *= corr;
                    Simd.scale(out, oo, out, oo, D, corr);
                    max = s;
                }
                float e = (float) Math.exp(s - max);
                sum += e;
                Simd.axpy(e, block, vo + i * kvStride, out, oo, D);
            }
        }
        Simd.scale(out, oo, out, oo, D, 1f / sum);
    }
}
