package dev.dsmoe.infer;

import java.util.Arrays;

/**
 * The paged key/value cache of an engine, shared by its sequences: blocks of
 * {@link #blockSize()} positions, handed to a sequence as it grows and taken back when it ends
 * (vLLM's paged attention). A block holds, for every layer, the keys (after RoPE) and the values
 * of the {@code N_kv} shared KV heads at its positions: layer l's keys from float
 * {@link #keyOffset(int) keyOffset(l)}, its values from {@link #valueOffset(int) valueOffset(l)},
 * {@code N_kv·D_att} floats per position. All attention experts read the same cache, whichever
 * are active.
 *
 * <p>Blocks are allocated on first use, up to {@link #maxBlocks()}, and kept for reuse once freed,
 * so memory follows the positions in use rather than the full context of every sequence, and a
 * steady decode allocates nothing. Not thread-safe: one engine uses it.
 */
public final class KvCache {

    /** Positions per block unless told otherwise. */
    public static final int DEFAULT_BLOCK = 16;

    private final int layers, width, blockSize, maxBlocks, blockFloats;
    private float[][] free = new float[8][];
    private int freeCount, allocated, inUse;

    /**
     * @param width     floats per position and layer, {@code N_kv·D_att}
     * @param blockSize positions per block, a power of two
     * @param maxBlocks the most blocks ever allocated (the memory budget)
     */
    public KvCache(int layers, int width, int blockSize, int maxBlocks) {
        if (layers < 1 || width < 1 || maxBlocks < 1) throw new IllegalArgumentException("need layers, width, max blocks >= 1");
        if (blockSize < 1 || Integer.bitCount(blockSize) != 1) {
            throw new IllegalArgumentException("KV block size must be a power of two, got " + blockSize);
        }
        long floats = 2L * layers * blockSize * width;
        if (floats > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("a KV block of " + blockSize + " positions x " + layers + " layers x " + width
                    + " floats is too large; use smaller blocks");
        }
        this.layers = layers;
        this.width = width;
        this.blockSize = blockSize;
        this.maxBlocks = maxBlocks;
        this.blockFloats = (int) floats;
    }

    /** Blocks needed for {@code positions} positions. */
    public int blocksFor(long positions) {
        return (int) Math.min(Integer.MAX_VALUE, (positions + blockSize - 1) / blockSize);
    }

    /** A free block (allocated now if none is kept and the budget allows), or null when the budget is spent. */
    float[] take() {
        float[] b;
        if (freeCount > 0) {
            b = free[--freeCount];
            free[freeCount] = null;
        } else if (allocated < maxBlocks) {
            b = new float[blockFloats];
            allocated++;
        } else {
            return null;
        }
        inUse++;
        return b;
    }

    /** Takes a block back for reuse. */
    void give(float[] block) {
        if (block.length != blockFloats) throw new IllegalArgumentException("not a block of this cache");
        if (freeCount == free.length) free = Arrays.copyOf(free, Math.min(Math.max(8, 2 * free.length), maxBlocks));
        free[freeCount++] = block;
        inUse--;
    }

    /** Float index in a block of layer l's first key. */
    public int keyOffset(int l) {
        return 2 * l * blockSize * width;
    }

    /** Float index in a block of layer l's first value. */
    public int valueOffset(int l) {
        return (2 * l + 1) * blockSize * width;
    }

    public int layers() {
        return layers;
    }

    /** Floats per position and layer, {@code N_kv·D_att}. */
    public int width() {
        return width;
    }

    /** Positions per block. */
    public int blockSize() {
        return blockSize;
    }

    /** The most blocks this cache allocates. */
    public int maxBlocks() {
        return maxBlocks;
    }

    /** Blocks held by sequences now. */
    public int blocksInUse() {
        return inUse;
    }

    /** Blocks a sequence can still get (free ones and those not yet allocated). */
    public int blocksAvailable() {
        return maxBlocks - inUse;
    }

    /** Bytes of the blocks allocated so far (in use or kept for reuse). */
    public long bytes() {
        return (long) allocated * blockFloats * Float.BYTES;
    }

    /** Bytes of one block. */
    public long blockBytes() {
        return (long) blockFloats * Float.BYTES;
    }

    /** Bytes the cache holds once all its blocks are allocated. */
    public long maxBytes() {
        return maxBlocks * blockBytes();
    }

    /** Bytes of {@code blocks} blocks of {@code blockSize} positions: keys and values of every layer, fp32. */
    public static long bytes(int layers, int width, int blockSize, long blocks) {
        return Math.multiplyExact(Math.multiplyExact(2L * Float.BYTES * layers * blockSize, (long) width), blocks);
    }
}
