package dev.dsmoe.data;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A token shard ({@code train.bin}, {@code val.bin}) memory-mapped read-only: nothing is loaded
 * whole, pages come in as they are read. Thread-safe for reading; {@link #close()} unmaps.
 */
public final class TokenShard implements AutoCloseable {
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path file;
    private final TokenDtype dtype;
    private final long size;
    private final Arena arena;
    private final MemorySegment seg;

    private TokenShard(Path file, TokenDtype dtype, long size, Arena arena, MemorySegment seg) {
        this.file = file;
        this.dtype = dtype;
        this.size = size;
        this.arena = arena;
        this.seg = seg;
    }

    /**
     * Maps {@code file}; it must hold exactly {@code expectedTokens} ids of {@code dtype}
     * (IllegalArgumentException naming the file otherwise). A negative {@code expectedTokens}
     * accepts any whole number of ids.
     */
    public static TokenShard open(Path file, TokenDtype dtype, long expectedTokens) throws IOException {
        long bytes;
        try {
            bytes = Files.size(file);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(file + ": shard missing; run ./dsmoe prepare again");
        }
        if (expectedTokens >= 0 && bytes != expectedTokens * dtype.bytes) {
            throw new IllegalArgumentException(file + ": has " + bytes + " bytes but meta.json says " + expectedTokens + " "
                    + dtype.jsonName() + " tokens (" + expectedTokens * dtype.bytes + " bytes); the shard is truncated or"
                    + " from another run: run ./dsmoe prepare again");
        }
        if (bytes % dtype.bytes != 0) {
            throw new IllegalArgumentException(file + ": " + bytes + " bytes is not a whole number of " + dtype.jsonName() + " tokens");
        }
        Arena arena = Arena.ofShared();
        MemorySegment seg;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            seg = bytes == 0 ? MemorySegment.NULL : ch.map(FileChannel.MapMode.READ_ONLY, 0, bytes, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
        return new TokenShard(file, dtype, bytes / dtype.bytes, arena, seg);
    }

    public Path file() {
        return file;
    }

    public TokenDtype dtype() {
        return dtype;
    }

    /** Number of tokens. */
    public long size() {
        return size;
    }

    /** Token {@code i}. */
    public int get(long i) {
        if (i < 0 || i >= size) throw new IndexOutOfBoundsException("token " + i + " of " + size + " in " + file);
        return dtype == TokenDtype.UINT16 ? Short.toUnsignedInt(seg.get(U16, i * 2)) : seg.get(U32, i * 4);
    }

    /**
     * The first {@code n} tokens, the shard repeated from its start when it holds fewer (a fixed
     * text of real tokens for timing runs).
     */
    public int[] head(int n) {
        if (size < 1) throw new IllegalArgumentException(file + ": no tokens");
        if (n < 0) throw new IllegalArgumentException("tokens must be >= 0, got " + n);
        int[] text = new int[n];
        int have = (int) Math.min(n, size);
        read(0, text, 0, have);
        for (int i = have; i < n; i++) text[i] = text[i % have];
        return text;
    }

    /** Copies tokens {@code [start, start+len)} into {@code dst[off, off+len)}. */
    public void read(long start, int[] dst, int off, int len) {
        if (start < 0 || len < 0 || start + len > size) {
            throw new IndexOutOfBoundsException("tokens [" + start + ", " + (start + len) + ") of " + size + " in " + file);
        }
        if (dtype == TokenDtype.UINT16) {
            long p = start * 2;
            for (int i = 0; i < len; i++, p += 2) dst[off + i] = Short.toUnsignedInt(seg.get(U16, p));
        } else {
            MemorySegment.copy(seg, U32, start * 4, dst, off, len);
        }
    }

    @Override
    public void close() {
        arena.close();
    }
}
