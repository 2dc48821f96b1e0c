package dev.dsmoe.tokenizer;

import dev.dsmoe.kernels.Parallel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Trains a byte-level BPE tokenizer with {@link CodePreTokenizer}. Ids 0..255 are the single
 * bytes, ids 256.. the merges in the order they were learned, and the last id is
 * {@code <|endoftext|>}.
 *
 * <p>Pre-token frequencies are counted in parallel over documents; merges then work on the
 * unique pre-tokens ("words") with an incremental structure: pair -> count, pair -> list of
 * words that contain (or once contained) it, and a max-heap of (count, pair) with lazy deletion.
 * Each merge touches only the words that contain the merged pair. Ties in count go to the pair
 * with the smallest (left id, right id), so training is deterministic: the same documents give
 * the same tokenizer, whatever the thread count.
 */
public final class BpeTrainer {

    /** Reports progress: {@code done} of {@code total} merges (0 once counting is over and merging starts). */
    @FunctionalInterface
    public interface Progress {
        void merges(int done, int total);
    }

    /** Pre-tokens longer than this many bytes are left out of training (rare: long runs of symbols). */
    static final int MAX_WORD_BYTES = 256;

    private BpeTrainer() {}

    /** Trains on {@code documents} up to {@code vocabSize} ids (fewer if the text runs out of pairs). */
    public static Tokenizer train(List<String> documents, int vocabSize, Progress progress) {
        if (vocabSize < 257) throw new IllegalArgumentException("--vocab-size must be at least 257 (256 bytes and <|endoftext|>), got " + vocabSize);
        Map<String, long[]> counts = countPreTokens(documents);
        int nw = counts.size();
        int[][] words = new int[nw][];
        int[] lens = new int[nw];
        long[] freq = new long[nw];
        int w = 0;
        for (Map.Entry<String, long[]> e : counts.entrySet()) {
            byte[] b = e.getKey().getBytes(StandardCharsets.UTF_8);
            int[] s = new int[b.length];
            for (int i = 0; i < b.length; i++) s[i] = b[i] & 0xff;
            words[w] = s;
            lens[w] = s.length;
            freq[w] = e.getValue()[0];
            w++;
        }
        counts = null;
        int targetMerges = vocabSize - 257;
        int[][] merges = new Merger(words, lens, freq).run(targetMerges, progress);
        int n = 256 + merges.length;
        byte[][] tokenBytes = new byte[n + 1][];
        for (int b = 0; b < 256; b++) tokenBytes[b] = new byte[] {(byte) b};
        for (int[] m : merges) {
            byte[] l = tokenBytes[m[0]];
            byte[] r = tokenBytes[m[1]];
            byte[] c = Arrays.copyOf(l, l.length + r.length);
            System.arraycopy(r, 0, c, l.length, r.length);
            tokenBytes[m[2]] = c;
        }
        tokenBytes[n] = Tokenizer.END_OF_TEXT.getBytes(StandardCharsets.UTF_8);
        return new Tokenizer(tokenBytes, merges, List.of(new Tokenizer.AddedToken(n, Tokenizer.END_OF_TEXT, true)),
                CodePreTokenizer.INSTANCE, false, false, null);
    }

    /** Pre-token -> frequency over all documents, counted in parallel. */
    static Map<String, long[]> countPreTokens(List<String> documents) {
        int chunks = Math.max(1, Math.min(Parallel.threads(), documents.size()));
        @SuppressWarnings("unchecked")
        HashMap<String, long[]>[] partial = new HashMap[chunks];
        Parallel.forRange(chunks, 1, (c0, c1) -> {
            for (int c = c0; c < c1; c++) {
                HashMap<String, long[]> m = new HashMap<>(1 << 16);
                int from = (int) ((long) documents.size() * c / chunks);
                int to = (int) ((long) documents.size() * (c + 1) / chunks);
                for (int d = from; d < to; d++) {
                    String text = documents.get(d);
                    CodePreTokenizer.INSTANCE.split(text, 0, text.length(), (a, b) -> {
                        if (b - a > MAX_WORD_BYTES) return;
                        long[] cnt = m.get(text.substring(a, b));
                        if (cnt == null) m.put(text.substring(a, b), new long[] {1});
                        else cnt[0]++;
                    });
                }
                partial[c] = m;
            }
        });
        HashMap<String, long[]> all = partial[0];
        for (int c = 1; c < chunks; c++) {
            for (Map.Entry<String, long[]> e : partial[c].entrySet()) {
                long[] cnt = all.get(e.getKey());
                if (cnt == null) all.put(e.getKey(), e.getValue());
                else cnt[0] += e.getValue()[0];
            }
            partial[c] = null;
        }
        all.keySet().removeIf(k -> k.getBytes(StandardCharsets.UTF_8).length > MAX_WORD_BYTES);
        return all;
    }

    /** The incremental merge loop over unique words. */
    private static final class Merger {
        final int[][] words;
        final int[] lens;
        final long[] freq;
        final LongIntMap pairIndex = new LongIntMap(1 << 16);
        long[] pairKey = new long[1 << 16];
        long[] pairCount = new long[1 << 16];
        int[][] pairWords = new int[1 << 16][];
        int[] pairWordsSize = new int[1 << 16];
        int pairs;
        // max-heap of pair indices ordered by (count desc, key asc), with the count at push time
        int[] heapPair = new int[1 << 16];
        long[] heapCount = new long[1 << 16];
        int heapSize;
        // pairs touched in the current merge step
        int[] touched = new int[1024];
        int touchedSize;
        int[] touchedStamp = new int[1 << 16];
        int[] wordStamp;
        int step = 1;

        Merger(int[][] words, int[] lens, long[] freq) {
            this.words = words;
            this.lens = lens;
            this.freq = freq;
            this.wordStamp = new int[words.length];
        }

        int[][] run(int targetMerges, Progress progress) {
            for (int w = 0; w < words.length; w++) {
                int[] s = words[w];
                for (int i = 0; i + 1 < lens[w]; i++) {
                    int p = pair(s[i], s[i + 1]);
                    pairCount[p] += freq[w];
                    addWord(p, w);
                }
            }
            for (int p = 0; p < pairs; p++) push(p);
            if (progress != null) progress.merges(0, targetMerges);
            List<int[]> merges = new ArrayList<>();
            int nextId = 256;
            while (merges.size() < targetMerges && heapSize > 0) {
                int p = heapPair[0];
                long c = heapCount[0];
                pop();
                if (c != pairCount[p] || c <= 0) continue;
                int a = (int) (pairKey[p] >>> 32);
                int b = (int) pairKey[p];
                int z = nextId++;
                merges.add(new int[] {a, b, z});
                apply(p, a, b, z);
                step++;
                if (progress != null && (merges.size() & 63) == 0) progress.merges(merges.size(), targetMerges);
            }
            if (progress != null) progress.merges(merges.size(), targetMerges);
            return merges.toArray(new int[0][]);
        }

        /** Replaces every (a, b) by z in the words that hold it, updating pair counts. */
        private void apply(int p, int a, int b, int z) {
            touchedSize = 0;
            int[] list = pairWords[p];
            int size = pairWordsSize[p];
            for (int li = 0; li < size; li++) {
                int w = list[li];
                if (wordStamp[w] == step) continue;
                wordStamp[w] = step;
                int[] s = words[w];
                int n = lens[w];
                long f = freq[w];
                int out = 0;
                int i = 0;
                while (i < n) {
                    if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                        change(pair(a, b), -f);
                        if (out > 0) {
                            int prev = s[out - 1];
                            change(pair(prev, a), -f);
                            int np = pair(prev, z);
                            change(np, f);
                            addWord(np, w);
                        }
                        if (i + 2 < n) {
                            int next = s[i + 2];
                            change(pair(b, next), -f);
                            int np = pair(z, next);
                            change(np, f);
                            addWord(np, w);
                        }
                        s[out++] = z;
                        i += 2;
                    } else {
                        s[out++] = s[i++];
                    }
                }
                lens[w] = out;
            }
            pairWords[p] = null;
            pairWordsSize[p] = 0;
            for (int t = 0; t < touchedSize; t++) {
                int q = touched[t];
                if (pairCount[q] > 0) push(q);
            }
        }

        private void change(int p, long delta) {
            pairCount[p] += delta;
            if (touchedStamp[p] != step) {
                touchedStamp[p] = step;
                if (touchedSize == touched.length) touched = Arrays.copyOf(touched, touchedSize * 2);
                touched[touchedSize++] = p;
            }
        }

        private int pair(int a, int b) {
            long k = LongIntMap.key(a, b);
            int p = pairIndex.get(k);
            if (p >= 0) return p;
            p = pairs++;
            if (p == pairKey.length) {
                int cap = p * 2;
                pairKey = Arrays.copyOf(pairKey, cap);
                pairCount = Arrays.copyOf(pairCount, cap);
                pairWords = Arrays.copyOf(pairWords, cap);
                pairWordsSize = Arrays.copyOf(pairWordsSize, cap);
                touchedStamp = Arrays.copyOf(touchedStamp, cap);
            }
            pairKey[p] = k;
            pairIndex.put(k, p);
            return p;
        }

        private void addWord(int p, int w) {
            int[] l = pairWords[p];
            int n = pairWordsSize[p];
            if (l == null) {
                l = new int[4];
                pairWords[p] = l;
            } else if (n > 0 && l[n - 1] == w) {
                return;
            } else if (n == l.length) {
                l = Arrays.copyOf(l, n * 2);
                pairWords[p] = l;
            }
            l[n] = w;
            pairWordsSize[p] = n + 1;
        }

        /** True when heap entry i ranks above entry j (higher count, then smaller pair). */
        private boolean above(long ci, int pi, long cj, int pj) {
            if (ci != cj) return ci > cj;
            return pairKey[pi] < pairKey[pj];
        }

        private void push(int p) {
            if (heapSize == heapPair.length) {
                heapPair = Arrays.copyOf(heapPair, heapSize * 2);
                heapCount = Arrays.copyOf(heapCount, heapSize * 2);
            }
            long c = pairCount[p];
            int i = heapSize++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (!above(c, p, heapCount[parent], heapPair[parent])) break;
                heapPair[i] = heapPair[parent];
                heapCount[i] = heapCount[parent];
                i = parent;
            }
            heapPair[i] = p;
            heapCount[i] = c;
        }

        private void pop() {
            int last = --heapSize;
            int p = heapPair[last];
            long c = heapCount[last];
            int i = 0;
            while (true) {
                int ch = 2 * i + 1;
                if (ch >= heapSize) break;
                if (ch + 1 < heapSize && above(heapCount[ch + 1], heapPair[ch + 1], heapCount[ch], heapPair[ch])) ch++;
                if (!above(heapCount[ch], heapPair[ch], c, p)) break;
                heapPair[i] = heapPair[ch];
                heapCount[i] = heapCount[ch];
                i = ch;
            }
            heapPair[i] = p;
            heapCount[i] = c;
        }
    }
}
