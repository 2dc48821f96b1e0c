package dev.dsmoe.infer;

/**
 * The key/value cache of one sequence: per layer, keys (after RoPE) and values of the
 * {@code N_kv} shared KV heads, {@code [capacity, N_kv·D_att]} each, two plain arrays per layer
 * as in llama3.java. All attention experts read the same cache, whichever are active.
 * {@link #length()} positions are filled.
 */
public final class KvCache {

    private final float[][] keys;
    private final float[][] values;
    private final int capacity;
    private final int width;
    private int length;

    /** @param width {@code N_kv·D_att} */
    public KvCache(int layers, int capacity, int width) {
        if (layers < 0 || capacity < 1 || width < 1) {
            throw new IllegalArgumentException("need layers >= 0, capacity >= 1 and width >= 1");
        }
        if ((long) capacity * width > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("a KV cache of " + capacity + " x " + width + " floats per layer is too large");
        }
        this.capacity = capacity;
        this.width = width;
        keys = new float[layers][capacity * width];
        values = new float[layers][capacity * width];
    }

    /** Rotated keys of layer l, row p at {@code p * width()}. */
    public float[] keys(int l) {
        return keys[l];
    }

    /** Values of layer l, row p at {@code p * width()}. */
    public float[] values(int l) {
        return values[l];
    }

    /** Positions filled. */
    public int length() {
        return length;
    }

    /** The most positions the cache holds. */
    public int capacity() {
        return capacity;
    }

    /** Floats per position and layer, {@code N_kv·D_att}. */
    public int width() {
        return width;
    }

    /** Forgets every position (the arrays are reused). */
    public void reset() {
        length = 0;
    }

    /** Keeps the first {@code n} positions (e.g. a shared prompt prefix). */
    public void truncate(int n) {
        if (n < 0 || n > length) throw new IllegalArgumentException("cannot truncate " + length + " positions to " + n);
        length = n;
    }

    void advance(int n) {
        if (length + n > capacity) throw new IllegalStateException("KV cache overflow");
        length += n;
    }

    /** Bytes held by the cache. */
    public long bytes() {
        return bytes(keys.length, capacity, width);
    }

    /** Bytes a cache of {@code layers x capacity x width} holds: keys and values, fp32. */
    public static long bytes(int layers, int capacity, int width) {
        return Math.multiplyExact(Math.multiplyExact(2L * Float.BYTES * layers, (long) capacity), (long) width);
    }
}
