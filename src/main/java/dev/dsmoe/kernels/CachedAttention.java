package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

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
 * rescaled when the maximum grows), a chunk of up to 16 positions at a time, so no score buffer
 * is needed and nothing is allocated. Work is split over (row, slice of the heads on one KV
 * head); each (row, head) owns its output, and its result depends on its own row only, never on
 * the other rows of the call nor on the slicing.
 */
public final class CachedAttention {

    private CachedAttention() {}

    /**
     * @param tables    each row's block table (row r: {@code tables[r]}); blocks hold keys and values.
     *                  A row whose table is null is left as it is (its attention is made elsewhere:
     *                  {@link PromptAttention} for prompt chunks)
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
            if (table == null) continue; // a row left to another kernel
            if (table.length <= p / blockSize) {
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
        // Work units: a row's heads in slices of one KV head's group (each key and value read
        // from the cache once for the group's heads), halved while the units are too few to keep
        // the threads busy (decode: one row).
        int group = Math.max(1, heads / (maxKv + 1)), slice = group;
        while (slice > 1 && (long) rows * ((heads + slice - 1) / slice) < 2L * Parallel.threads()) slice = (slice + 1) / 2;
        final int S = slice, perRow = (heads + S - 1) / S;
        int grain = Math.max(1, Simd.MIN_CHUNK / ((maxPos + 1) * 4 * D * S));
        Parallel.forRange(rows * perRow, grain, (u0, u1) -> {
            for (int u = u0; u < u1; u++) {
                int r = u / perRow, h0 = u % perRow * S, h1 = Math.min(heads, h0 + S);
                if (tables[r] == null) continue;
                for (int a = h0; a < h1; ) { // runs of heads on the same KV head
                    int b = a + 1;
                    while (b < h1 && kvHeadOf[b] == kvHeadOf[a]) b++;
                    heads(q, qOff + r * qStride, a, b, tables[r], kOff + kvHeadOf[a] * D, vOff + kvHeadOf[a] * D, shift,
                            kvStride, D, positions[posOff + r], scale, out, outOff + r * outStride);
                    a = b;
                }
            }
        });
    }

    /** Positions whose scores one pass computes: a tile's accumulators ({@link MatVec#TILE_ACCUMULATORS}). */
    private static final int CHUNK = MatVec.TILE_ACCUMULATORS;
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    /** Each thread's scores and weights of a chunk ({@code [0, CHUNK)} and {@code [CHUNK, 2·CHUNK)}), and the scores' column tails. */
    private static final ThreadLocal<float[]> CHUNK_SCRATCH = ThreadLocal.withInitial(() -> new float[3 * CHUNK]);

    /*
     * Heads [h0, h1) of one row, all on one KV head: the row's positions in chunks of up to 16
     * consecutive positions of one cache block, each chunk's keys and values (from the cache)
     * used by every head of the run while they are in the L1 cache; each head's running maximum,
     * sum and output carry over from chunk to chunk. Per head: a chunk's 16 scores q·k_j are 16
     * lane accumulators summed together (MatVec.tileLaneSums: one shuffle per pair of vectors
     * and level, not a reduction each), their exponentials one vector exp, and the softmax's
     * running maximum moves (rescaling the output) once per chunk; each position's weighted
     * value is added to the output lane block by lane block. A head's order is fixed by the
     * row's own positions only, so a row's result depends neither on the other rows nor on how
     * the heads were sliced.
     */
    private static void heads(float[] q, int qRow, int h0, int h1, float[][] table, int ko, int vo, int shift, int kvStride,
                              int D, int p, float scale, float[] out, int oRow) {
        float[] sums = MatVec.tileSums(), sc = CHUNK_SCRATCH.get(), state = state(h1 - h0);
        for (int h = h0; h < h1; h++) {
            Simd.zero(out, oRow + h * D, D);
            state[2 * (h - h0)] = Float.NEGATIVE_INFINITY;
            state[2 * (h - h0) + 1] = 0f;
        }
        int blockSize = 1 << shift;
        for (int j0 = 0; j0 <= p; ) {
            float[] block = table[j0 >> shift];
            int at = j0 & (blockSize - 1), n = Math.min(Math.min(CHUNK, blockSize - at), p - j0 + 1);
            int kb0 = ko + at * kvStride, vb = vo + at * kvStride;
            for (int h = h0; h < h1; h++) {
                int qo = qRow + h * D, oo = oRow + h * D;
                float max = state[2 * (h - h0)];
                scores(q, qo, block, kb0, kvStride, D, n, sums, sc);
                MatVec.tileLaneSums(sums);
                float chunkMax = Float.NEGATIVE_INFINITY;
                for (int i = 0; i < CHUNK; i++) {
                    float v = i < n ? (MatVec.tileSum(sums, i) + sc[2 * CHUNK + i]) * scale : Float.NEGATIVE_INFINITY;
                    sc[i] = v;
                    chunkMax = Math.max(chunkMax, v);
                }
                // what has been summed is rescaled to a new maximum as the chunk's values are added
                // (corr 0 on the first chunk, where nothing has been; 1 when the maximum stays)
                float corr = 1f;
                if (chunkMax > max) {
                    corr = Simd.exp(max - chunkMax);
                    max = chunkMax;
                }
                state[2 * (h - h0)] = max;
                state[2 * (h - h0) + 1] = state[2 * (h - h0) + 1] * corr
                        + Simd.expShiftStore(sc, 0, sc, CHUNK, CHUNK, max); // weights (0 past n: scores -inf)
                values(block, vb, kvStride, D, n, sc, corr, out, oo);
            }
            j0 += n;
        }
        for (int h = h0; h < h1; h++) Simd.scale(out, oRow + h * D, out, oRow + h * D, D, 1f / state[2 * (h - h0) + 1]);
    }

    // The helpers of heads pass arrays, not vectors: a vector passed to or returned from a call
    // C2 does not inline is boxed, and heads is too large for it to inline them all.

    /** Position i's lane accumulator of q·k_i into {@code sums[i·L]} (zeros past n), its column tail into {@code sc[2·CHUNK + i]}. */
    private static void scores(float[] q, int qo, float[] block, int kb0, int kvStride, int D, int n, float[] sums, float[] sc) {
        int bound = F.loopBound(D), i = 0;
        for (; i + 4 <= n; i += 4) { // four positions at a time: each query vector loaded once for four keys
            int k0 = kb0 + i * kvStride, k1 = k0 + kvStride, k2 = k1 + kvStride, k3 = k2 + kvStride;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int c = 0; c < bound; c += L) {
                FloatVector qv = FloatVector.fromArray(F, q, qo + c);
                a0 = qv.fma(FloatVector.fromArray(F, block, k0 + c), a0);
                a1 = qv.fma(FloatVector.fromArray(F, block, k1 + c), a1);
                a2 = qv.fma(FloatVector.fromArray(F, block, k2 + c), a2);
                a3 = qv.fma(FloatVector.fromArray(F, block, k3 + c), a3);
            }
            a0.intoArray(sums, i * L);
            a1.intoArray(sums, (i + 1) * L);
            a2.intoArray(sums, (i + 2) * L);
            a3.intoArray(sums, (i + 3) * L);
            for (int j = i; j < i + 4; j++) {
                int kb = kb0 + j * kvStride;
                float t = 0f;
                for (int c = bound; c < D; c++) t += q[qo + c] * block[kb + c];
                sc[2 * CHUNK + j] = t;
            }
        }
        for (; i < n; i++) {
            int kb = kb0 + i * kvStride;
            FloatVector a = FloatVector.zero(F);
            for (int c = 0; c < bound; c += L) a = FloatVector.fromArray(F, q, qo + c).fma(FloatVector.fromArray(F, block, kb + c), a);
            a.intoArray(sums, i * L);
            float t = 0f;
            for (int c = bound; c < D; c++) t += q[qo + c] * block[kb + c];
            sc[2 * CHUNK + i] = t;
        }
        java.util.Arrays.fill(sums, n * L, CHUNK * L, 0f);
    }

    /** {@code out[oo..oo+D) = out·corr + Σ_{i<n} sc[CHUNK + i]·v_i}, lane block by lane block. */
    private static void values(float[] block, int vb, int kvStride, int D, int n, float[] sc, float corr, float[] out, int oo) {
        int bound = F.loopBound(D), c = 0;
        FloatVector cv = FloatVector.broadcast(F, corr);
        for (; c + 4 * L <= bound; c += 4 * L) { // four lane blocks at a time: four independent chains of FMAs
            FloatVector o0 = FloatVector.fromArray(F, out, oo + c).mul(cv), o1 = FloatVector.fromArray(F, out, oo + c + L).mul(cv),
                    o2 = FloatVector.fromArray(F, out, oo + c + 2 * L).mul(cv), o3 = FloatVector.fromArray(F, out, oo + c + 3 * L).mul(cv);
            for (int i = 0; i < n; i++) {
                FloatVector wi = FloatVector.broadcast(F, sc[CHUNK + i]);
                int v = vb + i * kvStride + c;
                o0 = FloatVector.fromArray(F, block, v).fma(wi, o0);
                o1 = FloatVector.fromArray(F, block, v + L).fma(wi, o1);
                o2 = FloatVector.fromArray(F, block, v + 2 * L).fma(wi, o2);
                o3 = FloatVector.fromArray(F, block, v + 3 * L).fma(wi, o3);
            }
            o0.intoArray(out, oo + c);
            o1.intoArray(out, oo + c + L);
            o2.intoArray(out, oo + c + 2 * L);
            o3.intoArray(out, oo + c + 3 * L);
        }
        for (; c < bound; c += L) {
            FloatVector o = FloatVector.fromArray(F, out, oo + c).mul(cv);
            for (int i = 0; i < n; i++) {
                o = FloatVector.fromArray(F, block, vb + i * kvStride + c).fma(FloatVector.broadcast(F, sc[CHUNK + i]), o);
            }
            o.intoArray(out, oo + c);
        }
        for (; c < D; c++) {
            float o = out[oo + c] * corr;
            for (int i = 0; i < n; i++) o += sc[CHUNK + i] * block[vb + i * kvStride + c];
            out[oo + c] = o;
        }
    }

    private static final ThreadLocal<MatVec.Grown> STATE = ThreadLocal.withInitial(MatVec.Grown::new);

    /** The calling thread's running maxima and sums of {@code heads} heads (head i's at 2i and 2i+1). */
    private static float[] state(int heads) {
        return STATE.get().atLeast(2 * heads);
    }
}
