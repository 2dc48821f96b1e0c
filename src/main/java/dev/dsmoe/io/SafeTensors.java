package dev.dsmoe.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.dsmoe.kernels.Bf16;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The safetensors format, read memory-mapped and written atomically: an 8-byte little-endian
 * header length N, N bytes of JSON ({@code {"name": {"dtype", "shape", "data_offsets": [begin,
 * end]}, "__metadata__": {string: string}}}, padded with spaces to a multiple of 8), then the
 * raw little-endian tensor data, offsets relative to the end of the header. Every malformed file
 * is rejected with an {@link IOException} naming the file and what is wrong; as in the reference
 * implementation, the header must be UTF-8, offsets and dimensions integers, sizes must not
 * overflow, and the tensors must tile the data section exactly (no gap, overlap or trailing byte).
 */
public final class SafeTensors implements AutoCloseable {

    /**
     * The format's element types (all of whole bytes) so that any valid file opens; only the
     * floating-point ones ({@link #loadable}) can be read into a model.
     */
    public enum DType {
        F32(4, true), BF16(2, true), F16(2, true), F64(8, false), F8_E4M3(1, false), F8_E5M2(1, false),
        BOOL(1, false), U8(1, false), I8(1, false), U16(2, false), I16(2, false), U32(4, false), I32(4, false),
        U64(8, false), I64(8, false);
        public final int bytes;
        /** Whether {@link #readFloats} and the inference model can read this type. */
        public final boolean loadable;

        DType(int bytes, boolean loadable) {
            this.bytes = bytes;
            this.loadable = loadable;
        }

        /** Element {@code i} of a segment of this type, as fp32 ({@link #loadable} types only). */
        public float toFloat(MemorySegment s, long i) {
            return switch (this) {
                case F32 -> s.getAtIndex(F32_LE, i);
                case BF16 -> Bf16.toFloat(s.getAtIndex(I16_LE, i));
                case F16 -> Float.float16ToFloat(s.getAtIndex(I16_LE, i));
                default -> throw new IllegalStateException("not a floating-point type: " + this);
            };
        }
    }

    /** One tensor's entry: data at {@code [begin, end)} of the data section. */
    public record Info(String name, DType dtype, int[] shape, long begin, long end) {
        /** Elements; {@link #open} has checked that the product does not overflow. */
        public long numel() {
            return SafeTensors.numel(shape);
        }
    }

    /** The product of the dimensions; ArithmeticException if it overflows a long. */
    static long numel(int[] shape) {
        long n = 1;
        for (int s : shape) n = Math.multiplyExact(n, s);
        return n;
    }

    /** Largest header accepted (the reference implementation's limit). */
    static final long MAX_HEADER = 100L << 20;
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final MemorySegment data;
    private final Map<String, Info> tensors;
    private final Map<String, String> metadata;

    private SafeTensors(Path path, Arena arena, MemorySegment data, Map<String, Info> tensors,
                        Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.data = data;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Opens and validates {@code path}, mapping it into memory (shared: readable from any thread). */
    public static SafeTensors open(Path path) throws IOException {
        if (!Files.isRegularFile(path)) {
            throw new NoSuchFileException(path + ": no such safetensors file");
        }
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw bad(path, "file is " + size + " bytes, shorter than the 8-byte header length");
            MemorySegment file = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerLen = file.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (headerLen <= 0 || headerLen > MAX_HEADER || 8 + headerLen > size) {
                throw bad(path, "header length " + headerLen + " is impossible for a file of " + size + " bytes");
            }
            byte[] header = file.asSlice(8, headerLen).toArray(ValueLayout.JAVA_BYTE);
            MemorySegment data = file.asSlice(8 + headerLen);
            Map<String, String> meta = new LinkedHashMap<>();
            Map<String, Info> infos = parseHeader(path, header, data.byteSize(), meta);
            return new SafeTensors(path, arena, data, infos, meta);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static boolean isWholeLong(JsonNode n) {
        return n != null && n.isIntegralNumber() && n.canConvertToLong();
    }

    private static IOException bad(Path path, String what) {
        return new IOException(path + ": not a valid safetensors file: " + what);
    }

    private static Map<String, Info> parseHeader(Path path, byte[] header, long dataSize, Map<String, String> meta)
            throws IOException {
        JsonNode root;
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(header)).toString();
        } catch (CharacterCodingException e) {
            throw bad(path, "header is not valid UTF-8");
        }
        if (!text.startsWith("{")) throw bad(path, "header is not JSON: it does not start with '{'");
        try {
            root = JSON.readTree(text);
        } catch (IOException e) {
            throw bad(path, "header is not JSON (" + e.getMessage().lines().findFirst().orElse("") + ")");
        }
        if (root == null || !root.isObject()) throw bad(path, "header is not a JSON object");
        Map<String, Info> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode v = e.getValue();
            if (name.equals("__metadata__")) {
                if (!v.isObject()) throw bad(path, "__metadata__ is not an object");
                for (Iterator<Map.Entry<String, JsonNode>> m = v.fields(); m.hasNext(); ) {
                    Map.Entry<String, JsonNode> kv = m.next();
                    if (!kv.getValue().isTextual()) throw bad(path, "__metadata__." + kv.getKey() + " is not a string");
                    meta.put(kv.getKey(), kv.getValue().asText());
                }
                continue;
            }
            if (!v.isObject()) throw bad(path, "entry '" + name + "' is not an object");
            DType dtype;
            try {
                dtype = DType.valueOf(v.path("dtype").asText(""));
            } catch (IllegalArgumentException ex) {
                throw bad(path, "tensor '" + name + "' has dtype '" + v.path("dtype").asText() + "', not a safetensors type");
            }
            JsonNode shapeNode = v.get("shape"), offs = v.get("data_offsets");
            if (shapeNode == null || !shapeNode.isArray()) throw bad(path, "tensor '" + name + "' has no shape array");
            // Integers only: Jackson would read 1.5 as 1.
            if (offs == null || !offs.isArray() || offs.size() != 2 || !isWholeLong(offs.get(0)) || !isWholeLong(offs.get(1))) {
                throw bad(path, "tensor '" + name + "' has no [begin, end] data_offsets of two integers: " + offs);
            }
            int[] shape = new int[shapeNode.size()];
            for (int i = 0; i < shape.length; i++) {
                JsonNode s = shapeNode.get(i);
                if (!s.isIntegralNumber() || !s.canConvertToInt() || s.asInt() < 0) {
                    throw bad(path, "tensor '" + name + "' has a bad shape " + shapeNode + " (dimensions are integers from 0 to "
                            + Integer.MAX_VALUE + ")");
                }
                shape[i] = s.asInt();
            }
            long bytes;
            try {
                bytes = Math.multiplyExact(numel(shape), dtype.bytes);
            } catch (ArithmeticException ex) {
                throw bad(path, "tensor '" + name + "' has shape " + shapeNode + " whose size in bytes overflows");
            }
            long begin = offs.get(0).asLong(), end = offs.get(1).asLong();
            if (begin < 0 || end < begin || end > dataSize) {
                throw bad(path, "tensor '" + name + "' data_offsets [" + begin + ", " + end + "] lie outside the "
                        + dataSize + " data bytes (file truncated?)");
            }
            if (end - begin != bytes) {
                throw bad(path, "tensor '" + name + "' has " + (end - begin) + " bytes but shape " + shapeNode
                        + " of " + dtype + " needs " + bytes);
            }
            out.put(name, new Info(name, dtype, shape, begin, end));
        }
        // The tensors must tile the data section exactly, as the reference implementation requires:
        // no byte shared, none left over between them or after the last.
        List<Info> sorted = new ArrayList<>(out.values());
        sorted.sort(Comparator.comparingLong(Info::begin).thenComparingLong(Info::end));
        long pos = 0;
        Info prev = null;
        for (Info i : sorted) {
            if (i.begin() < pos) {
                throw bad(path, "tensors '" + prev.name() + "' and '" + i.name() + "' overlap");
            }
            if (i.begin() > pos) {
                throw bad(path, "data bytes [" + pos + ", " + i.begin() + ") belong to no tensor (a gap "
                        + (prev == null ? "before '" + i.name() + "'" : "between '" + prev.name() + "' and '" + i.name() + "'") + ")");
            }
            pos = i.end();
            prev = i;
        }
        if (pos != dataSize) {
            throw bad(path, (dataSize - pos) + " trailing data bytes after the last tensor belong to no tensor");
        }
        return Collections.unmodifiableMap(out);
    }

    public Path path() { return path; }

    /** Tensors in header order. */
    public Map<String, Info> tensors() { return tensors; }

    public Map<String, String> metadata() { return metadata; }

    /** The named tensor's entry; IOException naming the file when it is absent. */
    public Info info(String name) throws IOException {
        Info i = tensors.get(name);
        if (i == null) throw new IOException(path + ": has no tensor '" + name + "'");
        return i;
    }

    /**
     * The data section, mapped (valid until {@link #close()}): tensor {@code i}'s bytes are
     * {@code [i.begin(), i.end())} of it. For views that read two tensors at once (a Q8_0 weight's
     * quants and scales).
     */
    public MemorySegment data() {
        return data;
    }

    /** The raw little-endian bytes of a tensor, mapped (valid until {@link #close()}). */
    public MemorySegment segment(String name) throws IOException {
        Info i = info(name);
        return data.asSlice(i.begin(), i.end() - i.begin());
    }

    /** Copies the named tensor into {@code dst[off..]} as fp32, checking its shape and type. */
    public void readFloats(String name, int[] expectedShape, float[] dst, int off) throws IOException {
        Info i = info(name);
        if (!java.util.Arrays.equals(i.shape(), expectedShape)) {
            throw new IOException(path + ": tensor " + name + " has shape " + java.util.Arrays.toString(i.shape())
                    + ", the model expects " + java.util.Arrays.toString(expectedShape));
        }
        if (!i.dtype().loadable) {
            throw new IOException(path + ": tensor " + name + " has dtype " + i.dtype() + "; only F32, BF16 and F16 can be read");
        }
        int n = Math.toIntExact(i.numel());
        MemorySegment s = data.asSlice(i.begin(), i.end() - i.begin());
        switch (i.dtype()) {
            case F32 -> MemorySegment.copy(s, F32_LE, 0, dst, off, n);
            case BF16 -> { for (int k = 0; k < n; k++) dst[off + k] = Bf16.toFloat(s.getAtIndex(I16_LE, k)); }
            case F16 -> { for (int k = 0; k < n; k++) dst[off + k] = Float.float16ToFloat(s.getAtIndex(I16_LE, k)); }
            default -> throw new IllegalStateException("unreachable: " + i.dtype());
        }
    }

    @Override
    public void close() {
        arena.close();
    }

    // ------------------------------------------------------------------ writing

    /**
     * Collects tensors (views into float arrays, or content written when the file is) and writes
     * them as one safetensors file, in the order they were added.
     */
    public static final class Writer {
        /** A tensor: {@code src[off ..]} as F32 or BF16, or (src null) the bytes {@code content} writes. */
        private record Pending(String name, DType dtype, int[] shape, float[] src, int off, AtomicFiles.Content content) {
            long bytes() {
                return numel(shape) * dtype.bytes;
            }
        }

        private final List<Pending> pending = new ArrayList<>();
        private final Map<String, String> metadata = new LinkedHashMap<>();
        private java.util.function.LongConsumer progress = b -> { };

        /** Adds {@code src[off .. off+numel(shape))} as {@code name}, stored as {@code dtype}. */
        public Writer add(String name, DType dtype, int[] shape, float[] src, int off) {
            if (dtype != DType.F32 && dtype != DType.BF16) {
                throw new IllegalArgumentException("writing " + dtype + " is not supported; use F32 or BF16");
            }
            long n = numel(shape);
            if (off < 0 || n < 0 || off + n > src.length) throw new IllegalArgumentException(name + ": source range out of bounds");
            pending.add(new Pending(name, dtype, shape.clone(), src, off, null));
            return this;
        }

        /**
         * Adds a tensor of any type whose raw little-endian bytes ({@code numel(shape) · dtype.bytes}
         * of them, checked) {@code content} writes to the file's channel when the file is written:
         * a tensor produced tensor by tensor (a checkpoint being quantized) rather than held whole.
         */
        public Writer add(String name, DType dtype, int[] shape, AtomicFiles.Content content) {
            numel(shape); // overflow checked here, not while writing
            pending.add(new Pending(name, dtype, shape.clone(), null, 0, java.util.Objects.requireNonNull(content)));
            return this;
        }

        /** Called after each tensor is written with the data bytes written so far (of {@link #dataBytes()}). */
        public Writer progress(java.util.function.LongConsumer bytesWritten) {
            this.progress = bytesWritten;
            return this;
        }

        /** Bytes of the data section: all tensors'. */
        public long dataBytes() {
            long n = 0;
            for (Pending p : pending) n = Math.addExact(n, p.bytes());
            return n;
        }

        public Writer metadata(String key, String value) {
            metadata.put(key, value);
            return this;
        }

        private byte[] header() throws IOException {
            ObjectNode root = JSON.createObjectNode();
            if (!metadata.isEmpty()) {
                ObjectNode m = root.putObject("__metadata__");
                metadata.forEach(m::put);
            }
            long pos = 0;
            for (Pending p : pending) {
                ObjectNode t = root.putObject(p.name());
                t.put("dtype", p.dtype().name());
                var shape = t.putArray("shape");
                for (int s : p.shape()) shape.add(s);
                var offs = t.putArray("data_offsets");
                offs.add(pos);
                pos += p.bytes();
                offs.add(pos);
            }
            byte[] json = JSON.writeValueAsBytes(root);
            int padded = (json.length + 7) / 8 * 8;
            byte[] h = java.util.Arrays.copyOf(json, padded);
            java.util.Arrays.fill(h, json.length, padded, (byte) ' ');
            return h;
        }

        /** Writes the file to a new temporary file, forced to disk; {@link AtomicFiles.Temp#commit} renames it. */
        public AtomicFiles.Temp writeTemp(Path target) throws IOException {
            byte[] header = header();
            return AtomicFiles.writeTemp(target, ch -> {
                ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
                buf.putLong(header.length);
                for (byte b : header) {
                    if (!buf.hasRemaining()) drain(ch, buf);
                    buf.put(b);
                }
                long written = 0;
                for (Pending p : pending) {
                    if (p.content() != null) {
                        drain(ch, buf);
                        long before = ch.position();
                        p.content().writeTo(ch);
                        if (ch.position() - before != p.bytes()) {
                            throw new IllegalStateException("tensor " + p.name() + ": " + (ch.position() - before)
                                    + " bytes written, its shape and type take " + p.bytes());
                        }
                    } else {
                        long n = numel(p.shape());
                        for (long k = 0; k < n; k++) {
                            if (buf.remaining() < 4) drain(ch, buf);
                            float f = p.src()[(int) (p.off() + k)];
                            if (p.dtype() == DType.F32) buf.putFloat(f);
                            else buf.putShort(Bf16.fromFloat(f));
                        }
                    }
                    written += p.bytes();
                    progress.accept(written);
                }
                drain(ch, buf);
            });
        }

        /** Writes the file atomically. */
        public void write(Path target) throws IOException {
            try (AtomicFiles.Temp t = writeTemp(target)) {
                t.commit();
            }
        }

        /** Writes all of {@code bytes} (any size) to {@code ch} at its position: a {@link #add(String, DType, int[], AtomicFiles.Content)} content's usual body. */
        public static void write(FileChannel ch, MemorySegment bytes) throws IOException {
            for (long off = 0, chunk = 1 << 30; off < bytes.byteSize(); off += chunk) {
                ByteBuffer b = bytes.asSlice(off, Math.min(chunk, bytes.byteSize() - off)).asByteBuffer();
                while (b.hasRemaining()) ch.write(b);
            }
        }

        private static void drain(FileChannel ch, ByteBuffer buf) throws IOException {
            buf.flip();
            while (buf.hasRemaining()) ch.write(buf);
            buf.clear();
        }
    }
}
