package dev.dsmoe.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.Bf16;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafeTensorsTest {

    @TempDir
    Path dir;

    @Test
    void writeThenReadRoundTripsF32AndBf16WithMetadata() throws IOException {
        float[] a = new float[2 * 3 + 5];
        for (int i = 0; i < a.length; i++) a[i] = (float) Math.sin(i) * 10;
        Path f = dir.resolve("model.safetensors");
        new SafeTensors.Writer()
                .add("w", SafeTensors.DType.F32, new int[] {2, 3}, a, 0)
                .add("b", SafeTensors.DType.BF16, new int[] {5}, a, 6)
                .metadata("format", "pt")
                .write(f);
        assertEquals(8 + headerLength(f) + 6 * 4 + 5 * 2, Files.size(f), "header, then exactly the data");
        assertEquals(0, headerLength(f) % 8, "header padded to 8 bytes");
        try (var files = Files.list(dir)) {
            assertEquals(List.of(f), files.toList(), "temporary file renamed away");
        }
        try (SafeTensors st = SafeTensors.open(f)) {
            assertEquals("pt", st.metadata().get("format"));
            float[] w = new float[6];
            st.readFloats("w", new int[] {2, 3}, w, 0);
            for (int i = 0; i < 6; i++) assertEquals(a[i], w[i]);
            float[] b = new float[5];
            st.readFloats("b", new int[] {5}, b, 0);
            for (int i = 0; i < 5; i++) assertEquals(Bf16.toFloat(Bf16.fromFloat(a[6 + i])), b[i]);
            IOException e = assertThrows(IOException.class, () -> st.readFloats("w", new int[] {3, 2}, w, 0));
            assertTrue(e.getMessage().contains("has shape [2, 3], the model expects [3, 2]"), e.getMessage());
            assertThrows(IOException.class, () -> st.info("missing"));
        }
    }

    private static long headerLength(Path f) throws IOException {
        return ByteBuffer.wrap(Files.readAllBytes(f), 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }

    private Path raw(String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Path f = dir.resolve("bad.safetensors");
        Files.write(f, b.array());
        return f;
    }

    private void rejected(Path f, String expected) {
        IOException e = assertThrows(IOException.class, () -> SafeTensors.open(f).close());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertTrue(e.getMessage().contains(f.toString()), "names the file: " + e.getMessage());
    }

    @Test
    void rejectsMalformedFilesWithAClearReason() throws IOException {
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4), "outside the 4 data bytes");
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "needs 12");
        rejected(raw("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8), "dtype 'Q4', not a safetensors type");
        rejected(raw("not json", 0), "header is not JSON");
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8), "overlap");
        Path tiny = dir.resolve("tiny.safetensors");
        Files.write(tiny, new byte[] {1, 2, 3});
        rejected(tiny, "shorter than the 8-byte header length");
        Path huge = dir.resolve("huge.safetensors");
        Files.write(huge, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1L << 40).array());
        rejected(huge, "header length");
        assertThrows(java.nio.file.NoSuchFileException.class, () -> SafeTensors.open(dir.resolve("none")));
    }

    @Test
    void sizesThatOverflowAreRejected() throws IOException {
        // 2^30 * 2^30 * 2^30 * 16 elements wrap to 0 in a long: it must not pass as a 0-byte tensor.
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,1073741824,16],\"data_offsets\":[0,0]}}", 0),
                "overflows");
        // 2^62 elements fit a long, their 4-byte size does not (wraps to 0 too).
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,4],\"data_offsets\":[0,0]}}", 0),
                "overflows");
    }

    @Test
    void offsetsAndDimensionsMustBeIntegers() throws IOException {
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 4), "two integers");
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4]}}", 4), "two integers");
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4), "bad shape");
        rejected(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4), "two integers");
    }

    @Test
    void tensorsMustTileTheDataSectionExactly() throws IOException {
        String a = "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
        rejected(raw("{" + a + ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12),
                "data bytes [4, 8) belong to no tensor (a gap between 'a' and 'b')");
        rejected(raw("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "a gap before 'b'");
        rejected(raw("{" + a + "}", 12), "8 trailing data bytes");
        rejected(raw("{}", 4), "4 trailing data bytes");
        rejected(raw("{" + a + ",\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}", 4), "overlap");
        // exact tilings open, zero-sized tensors and an empty file included
        SafeTensors.open(raw("{" + a + ",\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
                + "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]}}", 12)).close();
        SafeTensors.open(raw("{}", 0)).close();
    }

    @Test
    void theHeaderMustBeUtf8JsonObject() throws IOException {
        byte[] h = "{\"a\u00ff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}".getBytes(StandardCharsets.ISO_8859_1);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + 4).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Path f = dir.resolve("latin1.safetensors");
        Files.write(f, b.array());
        rejected(f, "not valid UTF-8");
        rejected(raw(" {}", 0), "does not start with '{'");
    }

    @Test
    void aFailedWriteLeavesTheOldFileIntact() throws IOException {
        Path f = dir.resolve("m.safetensors");
        float[] a = {1, 2, 3};
        new SafeTensors.Writer().add("x", SafeTensors.DType.F32, new int[] {3}, a, 0).write(f);
        byte[] before = Files.readAllBytes(f);
        assertThrows(IllegalArgumentException.class, () ->
                new SafeTensors.Writer().add("x", SafeTensors.DType.F32, new int[] {4}, a, 0).write(f));
        assertArrayEquals(before, Files.readAllBytes(f));
    }

    /** A tensor whose bytes are written when the file is (a quantized weight): read back as written; a wrong byte count is a bug, caught. */
    @Test
    void contentTensorsOfAnyTypeRoundTripAndMustFillTheirShape() throws IOException {
        byte[] q = {1, -2, 3, -127, 127, 0};
        float[] scale = {0.5f, 0.25f};
        Path f = dir.resolve("q.safetensors");
        new SafeTensors.Writer().add("w", SafeTensors.DType.I8, new int[] {2, 3}, ch -> ch.write(ByteBuffer.wrap(q)))
                .add("w.scale", SafeTensors.DType.F32, new int[] {2, 1}, scale, 0).write(f);
        try (SafeTensors st = SafeTensors.open(f)) {
            assertEquals(SafeTensors.DType.I8, st.info("w").dtype());
            assertArrayEquals(q, st.segment("w").toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            assertEquals(st.info("w").end(), st.info("w.scale").begin());
            assertEquals(0.25f, st.data().get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN),
                    st.info("w.scale").begin() + 4));
        }
        SafeTensors.Writer bad = new SafeTensors.Writer().add("w", SafeTensors.DType.I8, new int[] {2, 4}, ch -> ch.write(ByteBuffer.wrap(q)));
        assertThrows(IllegalStateException.class, () -> bad.write(dir.resolve("bad.safetensors")));
        assertFalse(Files.exists(dir.resolve("bad.safetensors")));
    }
}
