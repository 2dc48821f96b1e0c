package dev.dsmoe.data;

import dev.dsmoe.io.AtomicFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Streams token ids into a shard file (little-endian uint16 or uint32) through a 1 MiB buffer.
 * {@link #close()} flushes and forces the file to disk; the caller renames it into place.
 * Write failures (a full disk) are IOExceptions naming the file.
 */
public final class ShardWriter implements AutoCloseable {
    private final Path file;
    private final TokenDtype dtype;
    private final FileChannel channel;
    private final boolean ownsChannel;
    private final ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
    private final long limit;
    private long count;
    private boolean closed;

    /** Creates (or truncates) {@code file}. */
    public ShardWriter(Path file, TokenDtype dtype) throws IOException {
        this.file = file;
        this.dtype = dtype;
        this.limit = dtype == TokenDtype.UINT16 ? 0xffffL : 0xffffffffL;
        this.channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE);
        this.ownsChannel = true;
    }

    /**
     * Writes to {@code channel} (e.g. an {@link AtomicFiles.Temp}'s), which stays open after
     * {@link #close()}; {@code file} is the name errors give.
     */
    public ShardWriter(FileChannel channel, Path file, TokenDtype dtype) {
        this.file = file;
        this.dtype = dtype;
        this.limit = dtype == TokenDtype.UINT16 ? 0xffffL : 0xffffffffL;
        this.channel = channel;
        this.ownsChannel = false;
    }

    /** Appends {@code ids[off, off+len)}. */
    public void write(int[] ids, int off, int len) throws IOException {
        for (int i = off; i < off + len; i++) {
            int id = ids[i];
            if (id < 0 || (id & 0xffffffffL) > limit) {
                throw new IllegalArgumentException("token id " + id + " does not fit " + dtype.jsonName() + " in " + file);
            }
            if (buf.remaining() < 4) flush();
            if (dtype == TokenDtype.UINT16) buf.putShort((short) id);
            else buf.putInt(id);
        }
        count += len;
    }

    /** Appends one id. */
    public void write(int id) throws IOException {
        write(new int[] {id}, 0, 1);
    }

    /** Tokens written so far. */
    public long count() {
        return count;
    }

    private void flush() throws IOException {
        buf.flip();
        try {
            while (buf.hasRemaining()) channel.write(buf);
        } catch (IOException e) {
            throw AtomicFiles.cannotWrite(file, e);
        }
        buf.clear();
    }

    @Override
    public void close() throws IOException {
        if (closed) return;
        closed = true;
        try {
            flush();
            channel.force(true);
        } catch (IOException e) {
            throw AtomicFiles.cannotWrite(file, e);
        } finally {
            if (ownsChannel) channel.close();
        }
    }
}
