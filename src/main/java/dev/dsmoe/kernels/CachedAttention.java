package dev.dsmoe.kernels;

/**
 * Attention of query rows against a key/value cache, for inference (prefill and decode): each
 * query row has its own position p and attends causally to cache rows {@code [0, p]}.
 *
 * <p>For row r, query head h (of {@code heads}) with KV head {@code g = kvHeadOf[h]} and
 * {@code p = positions[posOff + r]}:
 * <pre>
 *   out[r, h] = Σ_{j &lt;= p} softmax_j( q[r, h] · k[j, g] / sqrt(D) ) · v[j, g]
 * </pre>
 * Layouts: {@code q} and {@code out} rows of {@code heads*D} at the given strides; the caches
 * {@code k}, {@code v} rows {@code [positions, Hkv*D]} with row stride {@code kvStride} from
 * {@code kvOff}, keys already rotated (RoPE). The softmax is computed online (running maximum
 * and sum, the accumulator rescaled when the maximum grows), so no score buffer is needed and
 * nothing is allocated. Work is split over (row, head) pairs; each pair owns its output.
 */
public final class CachedAttention {

    private CachedAttention() {}

    public static void forward(float[] q, int qOff, int qStride, int rows, int heads, int[] kvHeadOf,
                               float[] k, float[] v, int kvOff, int kvStride, int D,
                               int[] positions, int posOff, float[] out, int outOff, int outStride) {
        if (rows < 0 || heads < 0 || D <= 0) throw new IllegalArgumentException("need rows, heads >= 0 and D > 0");
        if (kvHeadOf.length < heads) throw new IllegalArgumentException("kvHeadOf has fewer than " + heads + " entries");
        if (rows == 0 || heads == 0) return;
        int maxPos = 0;
        for (int r = 0; r < rows; r++) {
            int p = positions[posOff + r];
            if (p < 0) throw new IllegalArgumentException("negative position " + p + " for row " + r);
            maxPos = Math.max(maxPos, p);
        }
        int maxKv = 0;
        for (int h = 0; h < heads; h++) maxKv = Math.max(maxKv, kvHeadOf[h]);
        Simd.checkRange("q", q, qOff, Simd.extent(rows, qStride, (long) heads * D));
        Simd.checkRange("out", out, outOff, Simd.extent(rows, outStride, (long) heads * D));
        long kvExtent = Simd.extent(maxPos + 1L, kvStride, (maxKv + 1L) * D);
        Simd.checkRange("k", k, kvOff, kvExtent);
        Simd.checkRange("v", v, kvOff, kvExtent);
        float scale = (float) (1.0 / Math.sqrt(D));
        int grain = Math.max(1, Simd.MIN_CHUNK / ((maxPos + 1) * 4 * D));
        Parallel.forRange(rows * heads, grain, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                int r = i / heads, h = i % heads;
                head(q, qOff + r * qStride + h * D, k, v, kvOff + kvHeadOf[h] * D, kvStride, D,
                        positions[posOff + r], scale, out, outOff + r * outStride + h * D);
            }
        });
    }

    private static void head(float[] q, int qo, float[] k, float[] v, int kvo, int kvStride, int D, int p,
                             float scale, float[] out, int oo) {
        float max = Float.NEGATIVE_INFINITY, sum = 0f;
        Simd.zero(out, oo, D);
        for (int j = 0; j <= p; j++) {
            int ko = kvo + j * kvStride;
            float s = Simd.dot(q, qo, k, ko, D) * scale;
            if (s > max) {
                float corr = (float) Math.exp(max - s); // 0 on the first position
                sum *= corr;
                Simd.scale(out, oo, out, oo, D, corr);
                max = s;
            }
            float e = (float) Math.exp(s - max);
            sum += e;
            Simd.axpy(e, v, ko, out, oo, D);
        }
        Simd.scale(out, oo, out, oo, D, 1f / sum);
    }
}
