package dev.dsmoe.tokenizer;

import java.util.Arrays;

/** Open-addressing hash map from long keys to int values (no boxing); missing keys give -1. */
final class LongIntMap {
    private static final long EMPTY = Long.MIN_VALUE;
    private long[] keys;
    private int[] values;
    private int mask;
    private int size;

    LongIntMap(int expected) {
        int cap = Integer.highestOneBit(Math.max(4, expected * 2 - 1)) << 1;
        keys = new long[cap];
        Arrays.fill(keys, EMPTY);
        values = new int[cap];
        mask = cap - 1;
    }

    static long key(int a, int b) {
        return ((long) a << 32) | (b & 0xffffffffL);
    }

    private static int hash(long k) {
        k *= 0x9E3779B97F4A7C15L;
        return (int) (k ^ (k >>> 29) ^ (k >>> 47));
    }

    int get(long k) {
        int i = hash(k) & mask;
        while (true) {
            long kk = keys[i];
            if (kk == k) return values[i];
            if (kk == EMPTY) return -1;
            i = (i + 1) & mask;
        }
    }

    void put(long k, int v) {
        if (k == EMPTY) throw new IllegalArgumentException("reserved key");
        int i = hash(k) & mask;
        while (true) {
            long kk = keys[i];
            if (kk == k) {
                values[i] = v;
                return;
            }
            if (kk == EMPTY) {
                keys[i] = k;
                values[i] = v;
                if (++size * 2 > keys.length) grow();
                return;
            }
            i = (i + 1) & mask;
        }
    }

    int size() {
        return size;
    }

    private void grow() {
        long[] ok = keys;
        int[] ov = values;
        keys = new long[ok.length * 2];
        Arrays.fill(keys, EMPTY);
        values = new int[ok.length * 2];
        mask = keys.length - 1;
        size = 0;
        for (int i = 0; i < ok.length; i++) if (ok[i] != EMPTY) put(ok[i], ov[i]);
    }
}
