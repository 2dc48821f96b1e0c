package dev.dsmoe.kernels;

/**
 * Tokens grouped by expert, ScatterMoE style: each token picks up to K experts ("slots"); a
 * stable counting sort puts every (token, slot) pair into its expert's contiguous run, so each
 * expert can do one matrix product over its rows. Sized once for a maximum token count, reused
 * step after step without allocation.
 *
 * <p>After {@link #group}: rows {@code offsets[x] .. offsets[x+1]-1} belong to expert x; row r
 * came from token {@code token[r]} and slot {@code slot[r]} (an index into the caller's
 * {@code [N, K]} choice and gate arrays). Within an expert, rows are in token order.
 */
public final class ExpertGroups {

    private final int experts;
    private final int maxSlots;
    private final int[] offsets;
    private final int[] token;
    private final int[] slot;
    private final int[] cursor;
    private int rows;

    /** @param maxSlots the most (token, slot) pairs ever grouped at once: max tokens · K */
    public ExpertGroups(int experts, int maxSlots) {
        if (experts < 1) throw new IllegalArgumentException("experts must be >= 1, got " + experts);
        this.experts = experts;
        this.maxSlots = maxSlots;
        this.offsets = new int[experts + 1];
        this.token = new int[maxSlots];
        this.slot = new int[maxSlots];
        this.cursor = new int[experts];
    }

    /** Bytes an instance for {@code experts} and {@code maxSlots} holds in its arrays (the constructor's four). */
    public static long bytes(int experts, long maxSlots) {
        return Integer.BYTES * (2L * experts + 1 + 2 * maxSlots);
    }

    /**
     * Selects the K largest scores of each row (ties go to the lower expert index), writing the
     * expert indices to {@code chosen[t*k + j]} in descending score order.
     */
    public static void topK(float[] scores, int n, int e, int k, int[] chosen) {
        topK(scores, 0, n, e, k, chosen, 0);
    }

    /** {@link #topK(float[], int, int, int, int[])} over scores from {@code sOff}, writing chosen from {@code cOff}. */
    public static void topK(float[] scores, int sOff, int n, int e, int k, int[] chosen, int cOff) {
        if (k < 1 || k > e) throw new IllegalArgumentException("top-k needs 1 <= k <= " + e + ", got " + k);
        // one pass over the row, each score inserted into the k kept so far (sorted by score, then
        // index): O(e·k) at worst, where picking the best k times cost O(k²·e) (a DS-MoE MoA
        // ordering all 16 experts of every token of a prompt chunk, in every layer)
        for (int t = 0; t < n; t++) {
            int row = sOff + t * e, c = cOff + t * k, kept = 0;
            for (int i = 0; i < e; i++) {
                float v = scores[row + i];
                if (kept == k && !(v > scores[row + chosen[c + k - 1]])) continue;
                int p = kept < k ? kept++ : k - 1;
                for (; p > 0 && v > scores[row + chosen[c + p - 1]]; p--) chosen[c + p] = chosen[c + p - 1];
                chosen[c + p] = i;
            }
        }
    }

    /**
     * Groups the choices {@code chosen[t*k + j]} (an expert index, or -1 for an unused slot) of
     * {@code n} tokens by expert.
     */
    public void group(int[] chosen, int n, int k) {
        if ((long) n * k > maxSlots) {
            throw new IllegalArgumentException(n + " tokens x " + k + " slots exceed the capacity " + maxSlots);
        }
        java.util.Arrays.fill(offsets, 0);
        for (int s = 0; s < n * k; s++) {
            int x = chosen[s];
            if (x >= 0) offsets[x + 1]++;
        }
        for (int x = 0; x < experts; x++) offsets[x + 1] += offsets[x];
        System.arraycopy(offsets, 0, cursor, 0, experts);
        for (int s = 0; s < n * k; s++) {
            int x = chosen[s];
            if (x < 0) continue;
            int r = cursor[x]++;
            token[r] = s / k;
            slot[r] = s;
        }
        rows = offsets[experts];
    }

    public int experts() { return experts; }

    /** Number of grouped rows (selected token-slots). */
    public int rows() { return rows; }

    /** First grouped row of expert x. */
    public int start(int x) { return offsets[x]; }

    /** Rows of expert x. */
    public int count(int x) { return offsets[x + 1] - offsets[x]; }

    /** Token of grouped row r. */
    public int token(int r) { return token[r]; }

    /** The token of every grouped row, {@code tokens()[r] == token(r)} for {@code r < rows()} (the array itself: read only). */
    public int[] tokens() { return token; }

    /** Slot index ({@code t*K + j}) of grouped row r. */
    public int slot(int r) { return slot[r]; }

    /**
     * The inverse of {@link #slot}: {@code rowOfSlot[slot(r)] = r} for every grouped row (the
     * entries of slots without an expert are left as they are).
     */
    public void rowsOfSlots(int[] rowOfSlot) {
        for (int r = 0; r < rows; r++) rowOfSlot[slot[r]] = r;
    }

    /**
     * Copies the grouped rows' token vectors {@code x[token(r), :]} (width {@code d}) into
     * {@code out[r, :]}: the gather before each expert's product.
     */
    public void gather(float[] x, int d, float[] out) {
        Parallel.forRange(rows, 64, (r0, r1) -> {
            for (int r = r0; r < r1; r++) System.arraycopy(x, token[r] * d, out, r * d, d);
        });
    }
}
