package dev.dsmoe.tokenizer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A byte-level BPE tokenizer: text is split into pre-tokens ({@link PreTokenizer}), each
 * pre-token's UTF-8 bytes start as one symbol per byte, and merges are applied lowest rank
 * first (leftmost first among equal ranks), exactly as Hugging Face's BPE model does. Added
 * (special) tokens such as {@code <|endoftext|>} are matched in the text by {@link #encode} and
 * never by {@link #encodeOrdinary}. {@code decode(encode(s)).equals(s)} for every string that is
 * valid UTF-16 (no lone surrogates).
 *
 * <p>Immutable and thread-safe; each thread keeps its own bounded cache of pre-token ids.
 * Read and written as Hugging Face {@code tokenizer.json} by {@link #load} and {@link #save}.
 */
public final class Tokenizer {

    /** The document separator our tokenizers add as their last id. */
    public static final String END_OF_TEXT = "<|endoftext|>";

    /** A token matched in the raw text before pre-tokenization (HF's "added tokens"). */
    public record AddedToken(int id, String content, boolean special) {}

    private static final int SMALL = 48;
    private static final int MAX_CACHED_CHARS = 64;
    private static final int CACHE_ENTRIES = 1 << 18;

    private final byte[][] tokenBytes;
    private final int[] byteToId = new int[256];
    private final LongIntMap ranks;
    private final int[] mergeLeft;
    private final int[] mergeRight;
    private final int[] mergeResult;
    private final PreTokenizer preTokenizer;
    private final boolean addPrefixSpace;
    private final boolean ignoreMerges;
    private final Map<String, Integer> wholeTokens;
    private final String unkToken;
    private final int unkId;
    private final List<AddedToken> addedTokens;
    private final List<AddedToken> matchOrder;
    private final ThreadLocal<PieceCache> cache = ThreadLocal.withInitial(() -> new PieceCache(CACHE_ENTRIES));

    /**
     * @param tokenBytes  the bytes of each id (added tokens: their content in UTF-8; null for unused ids)
     * @param merges      merge pairs {left, right, result} in rank order
     * @param addedTokens tokens matched in raw text by {@link #encode}
     */
    Tokenizer(byte[][] tokenBytes, int[][] merges, List<AddedToken> addedTokens, PreTokenizer preTokenizer,
              boolean addPrefixSpace, boolean ignoreMerges, String unkToken) {
        this.tokenBytes = tokenBytes;
        this.preTokenizer = preTokenizer;
        this.addPrefixSpace = addPrefixSpace;
        this.ignoreMerges = ignoreMerges;
        this.addedTokens = List.copyOf(addedTokens);
        java.util.Arrays.fill(byteToId, -1);
        java.util.Set<Integer> addedIds = new java.util.HashSet<>();
        for (AddedToken t : addedTokens) addedIds.add(t.id());
        Map<String, Integer> whole = ignoreMerges ? new HashMap<>() : null;
        for (int id = 0; id < tokenBytes.length; id++) {
            byte[] b = tokenBytes[id];
            if (b == null || addedIds.contains(id)) continue;
            if (b.length == 1 && byteToId[b[0] & 0xff] < 0) byteToId[b[0] & 0xff] = id;
            if (whole != null) whole.putIfAbsent(new String(b, StandardCharsets.ISO_8859_1), id);
        }
        this.wholeTokens = whole;
        int n = merges.length;
        ranks = new LongIntMap(n);
        mergeLeft = new int[n];
        mergeRight = new int[n];
        mergeResult = new int[n];
        for (int r = 0; r < n; r++) {
            mergeLeft[r] = merges[r][0];
            mergeRight[r] = merges[r][1];
            mergeResult[r] = merges[r][2];
            long k = LongIntMap.key(merges[r][0], merges[r][1]);
            if (ranks.get(k) < 0) ranks.put(k, r);
        }
        this.unkToken = unkToken;
        int unk = -1;
        if (unkToken != null) {
            for (int id = 0; id < tokenBytes.length; id++) {
                if (tokenBytes[id] != null && java.util.Arrays.equals(tokenBytes[id], unkToken.getBytes(StandardCharsets.UTF_8))) {
                    unk = id;
                    break;
                }
            }
        }
        this.unkId = unk;
        List<AddedToken> order = new ArrayList<>(addedTokens);
        order.sort(Comparator.comparingInt((AddedToken t) -> -t.content().length()));
        this.matchOrder = order;
    }

    /**
     * Reads a Hugging Face {@code tokenizer.json} (BPE, byte-level) that no model bounds; see
     * {@link HfTokenizerJson} (its ids must stay below {@link HfTokenizerJson#MAX_IDS}).
     */
    public static Tokenizer load(Path file) throws IOException {
        return HfTokenizerJson.read(file, 0);
    }

    /**
     * Reads the {@code tokenizer.json} of a model with {@code modelVocabSize} embedding rows: an id
     * at or above it is an error naming the file, found before any table of that size is made.
     */
    public static Tokenizer load(Path file, int modelVocabSize) throws IOException {
        if (modelVocabSize < 1) throw new IllegalArgumentException("model vocab size must be >= 1, got " + modelVocabSize);
        return HfTokenizerJson.read(file, modelVocabSize);
    }

    /** Parses the text of a {@code tokenizer.json}; {@code name} appears in error messages. */
    public static Tokenizer fromJson(String json, String name) {
        return HfTokenizerJson.parse(json, name, 0);
    }

    /** {@link #fromJson(String, String)} for a model with {@code modelVocabSize} embedding rows (see {@link #load(Path, int)}). */
    public static Tokenizer fromJson(String json, String name, int modelVocabSize) {
        if (modelVocabSize < 1) throw new IllegalArgumentException("model vocab size must be >= 1, got " + modelVocabSize);
        return HfTokenizerJson.parse(json, name, modelVocabSize);
    }

    /** Writes this tokenizer as a Hugging Face {@code tokenizer.json} to {@code file}. */
    public void save(Path file) throws IOException {
        java.nio.file.Files.writeString(file, toJson());
    }

    /** This tokenizer as the text of a Hugging Face {@code tokenizer.json}. */
    public String toJson() {
        return HfTokenizerJson.write(this);
    }

    /** Number of ids (the largest id + 1). */
    public int vocabSize() {
        return tokenBytes.length;
    }

    /** The id of added token {@code content}, or -1. */
    public int addedTokenId(String content) {
        for (AddedToken t : addedTokens) if (t.content().equals(content)) return t.id();
        return -1;
    }

    /** The id of {@code <|endoftext|>}, or -1 when this tokenizer has none. */
    public int endOfTextId() {
        return addedTokenId(END_OF_TEXT);
    }

    public List<AddedToken> addedTokens() {
        return addedTokens;
    }

    public PreTokenizer preTokenizer() {
        return preTokenizer;
    }

    boolean addPrefixSpace() {
        return addPrefixSpace;
    }

    boolean ignoreMerges() {
        return ignoreMerges;
    }

    String unkToken() {
        return unkToken;
    }

    int mergeCount() {
        return mergeResult.length;
    }

    /** Merge of rank {@code r} as {left, right, result}. */
    int[] merge(int r) {
        return new int[] {mergeLeft[r], mergeRight[r], mergeResult[r]};
    }

    /** Whether {@link #decode} knows {@code id}: in range, and not an unused id. */
    public boolean canDecode(int id) {
        return id >= 0 && id < tokenBytes.length && tokenBytes[id] != null;
    }

    /** The bytes id {@code id} stands for (a copy), or null for an unused id. */
    public byte[] tokenBytes(int id) {
        byte[] b = tokenBytes[id];
        return b == null ? null : b.clone();
    }

    boolean isAdded(int id) {
        for (AddedToken t : addedTokens) if (t.id() == id) return true;
        return false;
    }

    /** The token's string as Hugging Face shows it (byte-level spelling; added tokens as written). */
    public String tokenString(int id) {
        for (AddedToken t : addedTokens) if (t.id() == id) return t.content();
        byte[] b = tokenBytes[id];
        return b == null ? null : ByteLevel.encode(b);
    }

    /** Ids of {@code text}, matching added tokens (e.g. {@code <|endoftext|>}) written in it. */
    public int[] encode(String text) {
        IntArray out = new IntArray(text.length() / 3 + 8);
        encode(text, out);
        return out.toArray();
    }

    /** {@link #encode(String)} appending to {@code out}. */
    public void encode(String text, IntArray out) {
        if (matchOrder.isEmpty()) {
            encodeSegment(text, 0, text.length(), out);
            return;
        }
        int pos = 0;
        int n = text.length();
        while (pos < n) {
            int bestAt = -1;
            AddedToken best = null;
            for (AddedToken t : matchOrder) {
                int at = text.indexOf(t.content(), pos);
                if (at >= 0 && (bestAt < 0 || at < bestAt)) {
                    bestAt = at;
                    best = t;
                }
            }
            if (best == null) {
                encodeSegment(text, pos, n, out);
                return;
            }
            encodeSegment(text, pos, bestAt, out);
            out.add(best.id());
            pos = bestAt + best.content().length();
        }
    }

    /** Ids of {@code text} with no added-token matching: the text is only ever ordinary text. */
    public int[] encodeOrdinary(String text) {
        IntArray out = new IntArray(text.length() / 3 + 8);
        encodeSegment(text, 0, text.length(), out);
        return out.toArray();
    }

    /** {@link #encodeOrdinary(String)} appending to {@code out}. */
    public void encodeOrdinary(String text, IntArray out) {
        encodeSegment(text, 0, text.length(), out);
    }

    private void encodeSegment(String text, int from, int to, IntArray out) {
        if (from >= to) return;
        String t = text;
        if (addPrefixSpace && text.charAt(from) != ' ') {
            t = " " + text.substring(from, to);
            from = 0;
            to = t.length();
        }
        PieceCache c = cache.get();
        String s = t;
        preTokenizer.split(s, from, to, (a, b) -> {
            if (b - a <= MAX_CACHED_CHARS) {
                int h = 0;
                for (int i = a; i < b; i++) h = 31 * h + s.charAt(i);
                int[] ids = c.get(s, a, b, h);
                if (ids == null) {
                    String key = s.substring(a, b);
                    ids = bpe(key.getBytes(StandardCharsets.UTF_8));
                    c.put(key, h, ids);
                }
                out.addAll(ids);
            } else {
                out.addAll(bpe(s.substring(a, b).getBytes(StandardCharsets.UTF_8)));
            }
        });
    }

    /**
     * Pre-token text -> ids, open addressing keyed by a char range of the text being encoded, so a
     * hit allocates nothing. Cleared when half full (bounded memory).
     */
    static final class PieceCache {
        private final String[] keys;
        private final int[] hashes;
        private final int[][] values;
        private final int mask;
        private int size;

        PieceCache(int entries) {
            int cap = Integer.highestOneBit(entries) * 2;
            keys = new String[cap];
            hashes = new int[cap];
            values = new int[cap][];
            mask = cap - 1;
        }

        private static int spread(int h) {
            return (h ^ (h >>> 16)) * 0x9E3779B9;
        }

        int[] get(String s, int a, int b, int h) {
            int len = b - a;
            for (int i = spread(h) & mask; ; i = (i + 1) & mask) {
                String k = keys[i];
                if (k == null) return null;
                if (hashes[i] == h && k.length() == len && k.regionMatches(0, s, a, len)) return values[i];
            }
        }

        void put(String key, int h, int[] ids) {
            if (size * 2 >= keys.length) {
                java.util.Arrays.fill(keys, null);
                java.util.Arrays.fill(values, null);
                size = 0;
            }
            int i = spread(h) & mask;
            while (keys[i] != null) i = (i + 1) & mask;
            keys[i] = key;
            hashes[i] = h;
            values[i] = ids;
            size++;
        }
    }

    private int rank(int a, int b) {
        int r = ranks.get(LongIntMap.key(a, b));
        return r < 0 ? Integer.MAX_VALUE : r;
    }

    /** The ids of one pre-token given as UTF-8 bytes. */
    int[] bpe(byte[] bytes) {
        int[] sym = new int[bytes.length];
        int m = 0;
        for (byte value : bytes) {
            int id = byteToId[value & 0xff];
            if (id >= 0) sym[m++] = id;
            else if (unkId >= 0) sym[m++] = unkId;
        }
        if (ignoreMerges) {
            Integer whole = wholeTokens.get(new String(bytes, StandardCharsets.ISO_8859_1));
            if (whole != null) return new int[] {whole};
        }
        if (m <= 1) return java.util.Arrays.copyOf(sym, m);
        return m <= SMALL ? mergeSmall(sym, m) : mergeLarge(sym, m);
    }

    /** Repeatedly merges the lowest-ranked adjacent pair (leftmost on ties); O(m^2) int scans. */
    private int[] mergeSmall(int[] sym, int m) {
        int[] r = new int[m - 1];
        for (int k = 0; k < m - 1; k++) r[k] = rank(sym[k], sym[k + 1]);
        while (m > 1) {
            int best = Integer.MAX_VALUE;
            int pos = -1;
            for (int k = 0; k < m - 1; k++) {
                if (r[k] < best) {
                    best = r[k];
                    pos = k;
                }
            }
            if (pos < 0) break;
            sym[pos] = mergeResult[best];
            System.arraycopy(sym, pos + 2, sym, pos + 1, m - pos - 2);
            if (m - pos - 3 > 0) System.arraycopy(r, pos + 2, r, pos + 1, m - pos - 3);
            m--;
            if (pos > 0) r[pos - 1] = rank(sym[pos - 1], sym[pos]);
            if (pos < m - 1) r[pos] = rank(sym[pos], sym[pos + 1]);
        }
        return java.util.Arrays.copyOf(sym, m);
    }

    /** The same merges with a linked list and a (rank, position) heap: O(m log m) for long pieces. */
    private int[] mergeLarge(int[] id, int m) {
        int[] prev = new int[m];
        int[] next = new int[m];
        for (int k = 0; k < m; k++) {
            prev[k] = k - 1;
            next[k] = k + 1 < m ? k + 1 : -1;
        }
        LongHeap heap = new LongHeap(m);
        for (int k = 0; k < m - 1; k++) {
            int r = rank(id[k], id[k + 1]);
            if (r != Integer.MAX_VALUE) heap.push(((long) r << 32) | k);
        }
        boolean[] dead = new boolean[m];
        while (!heap.isEmpty()) {
            long e = heap.pop();
            int r = (int) (e >>> 32);
            int p = (int) e;
            if (dead[p] || next[p] < 0) continue;
            int q = next[p];
            if (rank(id[p], id[q]) != r) continue;
            id[p] = mergeResult[r];
            dead[q] = true;
            next[p] = next[q];
            if (next[q] >= 0) prev[next[q]] = p;
            if (prev[p] >= 0) {
                int r2 = rank(id[prev[p]], id[p]);
                if (r2 != Integer.MAX_VALUE) heap.push(((long) r2 << 32) | prev[p]);
            }
            if (next[p] >= 0) {
                int r3 = rank(id[p], id[next[p]]);
                if (r3 != Integer.MAX_VALUE) heap.push(((long) r3 << 32) | p);
            }
        }
        IntArray out = new IntArray(m);
        for (int k = 0; k >= 0; k = next[k]) out.add(id[k]);
        return out.toArray();
    }

    /** The text of {@code ids} (UTF-8; an id sequence that splits a character gives U+FFFD). */
    public String decode(int[] ids) {
        return decode(ids, 0, ids.length);
    }

    /** {@link #decode(int[])} of {@code ids[off, off+len)}. */
    public String decode(int[] ids, int off, int len) {
        return new String(decodeBytes(ids, off, len), StandardCharsets.UTF_8);
    }

    /** The bytes of {@code ids[off, off+len)}. */
    public byte[] decodeBytes(int[] ids, int off, int len) {
        int total = 0;
        for (int i = off; i < off + len; i++) total += bytesOf(ids[i]).length;
        byte[] out = new byte[total];
        int p = 0;
        for (int i = off; i < off + len; i++) {
            byte[] b = bytesOf(ids[i]);
            System.arraycopy(b, 0, out, p, b.length);
            p += b.length;
        }
        return out;
    }

    private byte[] bytesOf(int id) {
        if (id < 0 || id >= tokenBytes.length || tokenBytes[id] == null) {
            throw new IllegalArgumentException("token id " + id + " is not in the vocabulary (size " + tokenBytes.length + ")");
        }
        return tokenBytes[id];
    }

    /** The pre-tokens of {@code text} (for inspection). */
    public List<String> preTokens(String text) {
        return Collections.unmodifiableList(preTokenizer.pieces(text));
    }

    /** A binary min-heap of longs. */
    static final class LongHeap {
        private long[] a;
        private int n;

        LongHeap(int capacity) {
            a = new long[Math.max(4, capacity)];
        }

        boolean isEmpty() {
            return n == 0;
        }

        void push(long v) {
            if (n == a.length) a = java.util.Arrays.copyOf(a, n * 2);
            int i = n++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (a[parent] <= v) break;
                a[i] = a[parent];
                i = parent;
            }
            a[i] = v;
        }

        long pop() {
            long top = a[0];
            long v = a[--n];
            int i = 0;
            while (true) {
                int c = 2 * i + 1;
                if (c >= n) break;
                if (c + 1 < n && a[c + 1] < a[c]) c++;
                if (a[c] >= v) break;
                a[i] = a[c];
                i = c;
            }
            a[i] = v;
            return top;
        }
    }
}
