package dev.dsmoe.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.data.TokenShard;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CodeTaskTest {

    static final int EOT = 40;

    @TempDir
    Path dir;

    /** Documents of random lengths (some too short for a snippet) separated by EOT. */
    static int[] corpus(int docs, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        List<Integer> t = new ArrayList<>();
        for (int d = 0; d < docs; d++) {
            int len = r.nextInt(5, 70);
            for (int i = 0; i < len; i++) t.add(r.nextInt(EOT));
            t.add(EOT);
        }
        return t.stream().mapToInt(Integer::intValue).toArray();
    }

    private static int documentOf(int[] tokens, long pos) {
        int d = 0;
        for (long i = 0; i < pos; i++) if (tokens[(int) i] == EOT) d++;
        return d;
    }

    @Test
    void itemsAreWellFormedAndDeterministic() throws IOException {
        int[] tokens = corpus(40, 1);
        CodeTask.Options o = new CodeTask.Options(30, 12, 5, 3, 99);
        try (TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            List<CodeTask.Item> items = CodeTask.build(shard, EOT, o, id -> 2);
            assertEquals(30, items.size());
            for (CodeTask.Item it : items) {
                var t = it.tokens();
                assertEquals(4, t.choices().length);
                assertTrue(it.gold() >= 0 && it.gold() < 4);
                assertEquals(it.continuationStart(), it.choiceStarts()[it.gold()]);
                // the context is the 12 tokens right before the gold continuation, inside one document
                assertEquals(it.contextStart() + 12, it.continuationStart());
                assertArrayEquals(Arrays.copyOfRange(tokens, (int) it.contextStart(), (int) it.continuationStart()), t.context());
                int host = documentOf(tokens, it.contextStart());
                assertEquals(host, documentOf(tokens, it.continuationStart() + 4), "snippet within one document");
                for (int i = (int) it.contextStart(); i < it.continuationStart() + 5; i++) assertTrue(tokens[i] != EOT);
                List<Integer> docs = new ArrayList<>();
                for (int c = 0; c < 4; c++) {
                    int s = (int) it.choiceStarts()[c];
                    assertEquals(5, t.choices()[c].length);
                    assertArrayEquals(Arrays.copyOfRange(tokens, s, s + 5), t.choices()[c]);
                    assertEquals(10, t.choiceBytes()[c]);
                    int d = documentOf(tokens, s);
                    assertEquals(d, documentOf(tokens, s + 4), "a choice lies inside one document");
                    assertFalse(docs.contains(d), "each choice from a different document");
                    docs.add(d);
                    if (c != it.gold()) {
                        // distractors: other documents, so never overlapping the context; never equal to the gold
                        assertTrue(s + 5 <= it.contextStart() || s >= it.continuationStart() + 5);
                        assertFalse(Arrays.equals(t.choices()[c], t.choices()[it.gold()]));
                    }
                }
            }
            // snippets of one document do not overlap
            for (int a = 0; a < items.size(); a++) {
                for (int b = a + 1; b < items.size(); b++) {
                    long sa = items.get(a).contextStart(), sb = items.get(b).contextStart();
                    assertTrue(Math.abs(sa - sb) >= 17, "snippets overlap: " + sa + ", " + sb);
                }
            }
            // the gold position varies
            assertTrue(items.stream().mapToInt(CodeTask.Item::gold).distinct().count() > 1);

            List<CodeTask.Item> again = CodeTask.build(shard, EOT, o, id -> 2);
            assertEquals(items.size(), again.size());
            for (int i = 0; i < items.size(); i++) {
                assertEquals(items.get(i).contextStart(), again.get(i).contextStart());
                assertArrayEquals(items.get(i).choiceStarts(), again.get(i).choiceStarts());
                assertEquals(items.get(i).gold(), again.get(i).gold());
            }
            List<CodeTask.Item> other = CodeTask.build(shard, EOT, new CodeTask.Options(30, 12, 5, 3, 100), id -> 2);
            assertFalse(Arrays.equals(items.stream().mapToLong(CodeTask.Item::contextStart).toArray(),
                    other.stream().mapToLong(CodeTask.Item::contextStart).toArray()), "another seed, other snippets");
        }
    }

    @Test
    void aSmallSplitGivesFewerItemsOrAClearError() throws IOException {
        int[] tokens = corpus(40, 2);
        try (TokenShard shard = EvalFixtures.shard(dir.resolve("val.bin"), tokens)) {
            List<CodeTask.Item> many = CodeTask.build(shard, EOT, new CodeTask.Options(100_000, 12, 5, 3, 1), id -> 1);
            assertTrue(many.size() < 100_000 && many.size() >= 40, "as many as fit: " + many.size());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> CodeTask.build(shard, EOT, new CodeTask.Options(10, 500, 5, 3, 1), id -> 1));
            assertTrue(e.getMessage().contains("the code task needs a document of at least 505 tokens"), e.getMessage());
        }
        try (TokenShard empty = EvalFixtures.shard(dir.resolve("empty.bin"), new int[0])) {
            assertThrows(IllegalArgumentException.class, () -> CodeTask.build(empty, EOT, CodeTask.Options.DEFAULTS, id -> 1));
        }
    }
}
