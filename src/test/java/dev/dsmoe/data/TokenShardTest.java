package dev.dsmoe.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenShardTest {

    static int[] randomIds(int n, int vocab, long seed) {
        Random r = new Random(seed);
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = r.nextInt(vocab);
        return ids;
    }

    @Test
    void writeThenMappedReadRoundTripsBothDtypes(@TempDir Path dir) throws IOException {
        for (TokenDtype dtype : TokenDtype.values()) {
            int vocab = dtype == TokenDtype.UINT16 ? 65536 : 200_000;
            int[] ids = randomIds(700_001, vocab, 1);
            Path f = dir.resolve(dtype + ".bin");
            try (ShardWriter w = new ShardWriter(f, dtype)) {
                w.write(ids, 0, 300_000);
                w.write(ids, 300_000, ids.length - 300_000);
                assertEquals(ids.length, w.count());
            }
            assertEquals((long) ids.length * dtype.bytes, Files.size(f));
            try (TokenShard s = TokenShard.open(f, dtype, ids.length)) {
                assertEquals(ids.length, s.size());
                int[] back = new int[ids.length];
                s.read(0, back, 0, ids.length);
                assertArrayEquals(ids, back);
                assertEquals(ids[12345], s.get(12345));
            }
        }
    }

    @Test
    void shardsAreLittleEndian(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("t.bin");
        try (ShardWriter w = new ShardWriter(f, TokenDtype.UINT16)) {
            w.write(new int[] {0x1234, 0xfffe}, 0, 2);
        }
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(0x1234, b.getShort(0) & 0xffff);
        assertEquals(0xfffe, b.getShort(2) & 0xffff);
    }

    /** head(n): the first n tokens, the shard repeated from its start when it is shorter. */
    @Test
    void headRepeatsAShortShard(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("v.bin");
        try (ShardWriter w = new ShardWriter(f, TokenDtype.UINT16)) {
            w.write(new int[] {5, 6, 7}, 0, 3);
        }
        try (TokenShard s = TokenShard.open(f, TokenDtype.UINT16, 3)) {
            assertArrayEquals(new int[] {5, 6}, s.head(2));
            assertArrayEquals(new int[] {5, 6, 7, 5, 6, 7, 5}, s.head(7));
        }
    }

    @Test
    void dtypeFollowsTheVocabularySize() {
        assertEquals(TokenDtype.UINT16, TokenDtype.forVocab(8192));
        assertEquals(TokenDtype.UINT16, TokenDtype.forVocab(65536));
        assertEquals(TokenDtype.UINT32, TokenDtype.forVocab(65537));
    }

    @Test
    void sizeThatDisagreesWithMetaIsAOneLineErrorNamingTheFile(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("train.bin");
        try (ShardWriter w = new ShardWriter(f, TokenDtype.UINT16)) {
            w.write(new int[] {1, 2, 3}, 0, 3);
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(f, TokenDtype.UINT16, 4));
        assertTrue(e.getMessage().startsWith(f + ": has 6 bytes but meta.json says 4 uint16 tokens"), e.getMessage());
        assertTrue(!e.getMessage().contains("\n"));
    }

    @Test
    void idsThatDoNotFitTheDtypeAreRejected(@TempDir Path dir) throws IOException {
        try (ShardWriter w = new ShardWriter(dir.resolve("x.bin"), TokenDtype.UINT16)) {
            assertThrows(IllegalArgumentException.class, () -> w.write(new int[] {65536}, 0, 1));
        }
    }
}
