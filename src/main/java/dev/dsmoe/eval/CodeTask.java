package dev.dsmoe.eval;

import dev.dsmoe.data.TokenShard;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.IntUnaryOperator;

/**
 * A built-in zero-shot task made from the validation shard, so there is a multiple-choice
 * number without downloads: "which of these is the true continuation of this held-out snippet?"
 *
 * <p>The shard's token stream is split into documents at the end-of-text id. Each item takes
 * {@code contextTokens} consecutive tokens of a document as the context and the
 * {@code continuationTokens} that follow them as the gold continuation; the distractors are
 * spans of the same token length from other documents, each from a different one, none equal to
 * the gold continuation or to each other. Items come from documents long enough for a context
 * and its continuation: the documents in a seeded random order, one snippet from each, then a
 * second from each document with room for one, and so on (snippets of one document never
 * overlap). The gold position among the choices is random. Everything depends only on the shard
 * and the {@link Options}: the same inputs give the same items.
 */
public final class CodeTask {

    private CodeTask() {}

    /** Task shape; {@link #DEFAULTS}: 200 items, 64 context tokens, 16-token continuations, 3 distractors. */
    public record Options(int items, int contextTokens, int continuationTokens, int distractors, long seed) {
        public static final Options DEFAULTS = new Options(200, 64, 16, 3, 1234);

        public Options {
            if (items < 1) throw new IllegalArgumentException("the code task needs at least 1 item, got " + items);
            if (contextTokens < 1) throw new IllegalArgumentException("the code task context must be >= 1 token, got " + contextTokens);
            if (continuationTokens < 1) {
                throw new IllegalArgumentException("the code task continuation must be >= 1 token, got " + continuationTokens);
            }
            if (distractors < 1) throw new IllegalArgumentException("the code task needs at least 1 distractor, got " + distractors);
        }

        public Options withItems(int n) {
            return new Options(n, contextTokens, continuationTokens, distractors, seed);
        }
    }

    /**
     * One item: where its context and choices lie in the shard ({@code choiceStarts[gold] ==
     * continuationStart}) and its tokens.
     */
    public record Item(long contextStart, long continuationStart, long[] choiceStarts, MultipleChoice.TokenItem tokens) {
        public int gold() {
            return tokens.gold();
        }
    }

    /** A document of the shard: tokens {@code [start, end)}, the end-of-text id excluded. */
    record Doc(long start, long end) {
        long length() {
            return end - start;
        }
    }

    /** Documents of the shard (split at {@code eotId}; empty ones dropped). */
    static List<Doc> documents(TokenShard shard, int eotId) {
        List<Doc> docs = new ArrayList<>();
        int[] buf = new int[1 << 16];
        long start = 0, n = shard.size();
        for (long pos = 0; pos < n; pos += buf.length) {
            int len = (int) Math.min(buf.length, n - pos);
            shard.read(pos, buf, 0, len);
            for (int i = 0; i < len; i++) {
                if (buf[i] == eotId) {
                    if (pos + i > start) docs.add(new Doc(start, pos + i));
                    start = pos + i + 1;
                }
            }
        }
        if (n > start) docs.add(new Doc(start, n));
        return docs;
    }

    /**
     * Builds the items from {@code shard}; {@code byteLength} gives the UTF-8 byte length of a
     * token id (for acc_norm). Fewer than {@code o.items()} come back when the shard has no room
     * for more; none at all (too few or too short documents) is an IllegalArgumentException.
     */
    public static List<Item> build(TokenShard shard, int eotId, Options o, IntUnaryOperator byteLength) {
        List<Doc> docs = documents(shard, eotId);
        int span = o.contextTokens() + o.continuationTokens();
        List<Integer> hosts = new ArrayList<>(), donors = new ArrayList<>();
        for (int i = 0; i < docs.size(); i++) {
            if (docs.get(i).length() >= span) hosts.add(i);
            if (docs.get(i).length() >= o.continuationTokens()) donors.add(i);
        }
        if (hosts.isEmpty() || donors.size() < o.distractors() + 1) {
            throw new IllegalArgumentException(shard.file() + ": the code task needs a document of at least " + span
                    + " tokens and " + (o.distractors() + 1) + " of at least " + o.continuationTokens() + "; the validation split has "
                    + docs.size() + " documents (" + hosts.size() + " and " + donors.size() + " long enough)");
        }
        SplittableRandom rnd = new SplittableRandom(o.seed());
        shuffle(hosts, rnd);

        // Snippet positions: round r takes the r-th snippet of every document with room for r+1.
        long[][] slots = new long[hosts.size()][];
        int maxRounds = 0;
        for (int h = 0; h < hosts.size(); h++) {
            Doc d = docs.get(hosts.get(h));
            int k = (int) Math.min(d.length() / span, o.items());
            long off = d.start() + rnd.nextLong(d.length() - (long) k * span + 1);
            slots[h] = new long[k];
            for (int s = 0; s < k; s++) slots[h][s] = off + (long) s * span + o.contextTokens(); // continuation start
            maxRounds = Math.max(maxRounds, k);
        }
        List<Item> items = new ArrayList<>();
        for (int r = 0; r < maxRounds && items.size() < o.items(); r++) {
            for (int h = 0; h < hosts.size() && items.size() < o.items(); h++) {
                if (r >= slots[h].length) continue;
                Item it = item(shard, docs, donors, hosts.get(h), slots[h][r], o, rnd, byteLength);
                if (it != null) items.add(it);
            }
        }
        if (items.isEmpty()) {
            throw new IllegalArgumentException(shard.file() + ": no code task item could be made (the candidate distractors all"
                    + " equal the true continuations)");
        }
        return items;
    }

    private static Item item(TokenShard shard, List<Doc> docs, List<Integer> donors, int host, long contStart, Options o,
                             SplittableRandom rnd, IntUnaryOperator byteLength) {
        int nChoices = o.distractors() + 1, len = o.continuationTokens();
        int[] context = new int[o.contextTokens()];
        shard.read(contStart - o.contextTokens(), context, 0, context.length);
        int gold = rnd.nextInt(nChoices);
        int[][] choices = new int[nChoices][];
        long[] starts = new long[nChoices];
        choices[gold] = new int[len];
        shard.read(contStart, choices[gold], 0, len);
        starts[gold] = contStart;
        List<Integer> usedDocs = new ArrayList<>(List.of(host));
        for (int c = 0; c < nChoices; c++) {
            if (c == gold) continue;
            boolean found = false;
            for (int attempt = 0; attempt < 64 && !found; attempt++) {
                int di = donors.get(rnd.nextInt(donors.size()));
                if (usedDocs.contains(di)) continue;
                Doc d = docs.get(di);
                long s = d.start() + rnd.nextLong(d.length() - len + 1);
                int[] cand = new int[len];
                shard.read(s, cand, 0, len);
                boolean dup = false;
                for (int[] other : choices) dup |= other != null && Arrays.equals(other, cand);
                if (dup) continue;
                choices[c] = cand;
                starts[c] = s;
                usedDocs.add(di);
                found = true;
            }
            if (!found) return null;
        }
        int[] bytes = new int[nChoices];
        for (int c = 0; c < nChoices; c++) {
            for (int t : choices[c]) bytes[c] += byteLength.applyAsInt(t);
        }
        return new Item(contStart - o.contextTokens(), contStart, starts,
                new MultipleChoice.TokenItem(context, choices, gold, bytes));
    }

    private static void shuffle(List<Integer> a, SplittableRandom rnd) {
        for (int i = a.size() - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            Integer t = a.get(i);
            a.set(i, a.get(j));
            a.set(j, t);
        }
    }

    /** The token items alone. */
    public static List<MultipleChoice.TokenItem> tokenItems(List<Item> items) {
        return items.stream().map(Item::tokens).toList();
    }
}
