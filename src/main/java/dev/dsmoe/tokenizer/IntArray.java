package dev.dsmoe.tokenizer;

import java.util.Arrays;

/** A growable int array (token ids) without boxing. */
public final class IntArray {
    private int[] data;
    private int size;

    public IntArray() {
        this(64);
    }

    public IntArray(int capacity) {
        data = new int[Math.max(4, capacity)];
    }

    public void add(int v) {
        if (size == data.length) data = Arrays.copyOf(data, data.length * 2);
        data[size++] = v;
    }

    public void addAll(int[] v) {
        if (size + v.length > data.length) data = Arrays.copyOf(data, Math.max(data.length * 2, size + v.length));
        System.arraycopy(v, 0, data, size, v.length);
        size += v.length;
    }

    public int get(int i) {
        return data[i];
    }

    public int size() {
        return size;
    }

    public void clear() {
        size = 0;
    }

    /** The backing array (valid up to {@link #size()}). */
    public int[] array() {
        return data;
    }

    public int[] toArray() {
        return Arrays.copyOf(data, size);
    }
}
