package dev.dsmoe.kernels;

import java.lang.foreign.AddressLayout;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Inference's large products ({@code y = x · Wᵀ}, more rows than the mat-vec takes: prefill chunks,
 * expert runs) through oneDNN's matmul: Debian's {@code libdnnl.so.2} (oneDNN 2.x, package
 * {@code libdnnl2}), bound with the FFM API. It is what llama.cpp's own speed in prefill comes
 * from on this kind of CPU and what the Vector API cannot reach: AMX tiles for bf16 (about 1
 * TFLOP/s a core on the benchmark machine, against OpenBLAS sgemm's 165 GFLOP/s) and
 * brgemm kernels for fp32 (about 190 GFLOP/s a core).
 *
 * <p>Precision. fp32 weights: fp32 products, as OpenBLAS (another summation order). bf16 and Q8_0
 * weights on a CPU with oneDNN's bf16 products (AVX-512): the input rows are rounded to bf16 (as
 * llama.cpp's bf16 path rounds them) and a Q8_0 weight's values {@code scale · q} are rounded to
 * bf16, then multiplied in bf16 with fp32 accumulation; BENCHMARKS.md gives the perplexity this
 * costs. Without them (AVX2, e.g. AMD Zen 3) each column block of the weight is unpacked to fp32
 * (the values the mat-vec multiplies) and multiplied in fp32. Training never comes here: its
 * bits depend on the GEMM backend it records ({@link Kernels}).
 *
 * <p>Each call is cut into chunks of output columns (weight rows; {@link #chunkWidth}) that the
 * {@link Parallel} threads pull, each chunk one single-threaded oneDNN call (oneDNN's OpenMP
 * threads are set to 1 on every calling thread: the engine's pool splits the work, as it does for
 * OpenBLAS) into a per-thread native buffer, then copied or added into {@code y} while in cache.
 * The input rows are converted once per call into the calling thread's native buffer (the heap
 * arrays cannot be handed to a library that keeps their address between calls). A chunk's result
 * depends only on its own rows and the product's row count, never on the thread that ran it (nor
 * on the chunk width: oneDNN's sum over k for an output is the same whatever the columns around it).
 *
 * <p>Off when the library does not load (one reason in {@link #unavailableReason()}), and by
 * {@code -Ddsmoe.onednn=off} or {@code DSMOE_ONEDNN=off}: then the format's unpack-and-sgemm path.
 * Native scratch is per thread and not in {@code Engine.footprint}: for a call of m rows,
 * {@code m·k} input values plus {@code m·c} floats and {@code c·k} bf16 (or unpacked fp32) weights, c the chunk width.
 */
public final class OneDnn {

    /** Output columns per oneDNN call: a [256 x 256] fp32 result stays in L2, and AMX runs them at full speed. */
    public static final int CHUNK = 256;
    /**
     * Output columns per call when the call's groups average at most {@link #WIDE_ROWS} rows
     * (prefill's expert runs: dsmoe-1b's MLP experts get about 72 rows of a 256-token chunk) of at
     * most {@link #WIDE_K} columns: four times fewer calls, each result and weight block still in
     * L2. dsmoe-1b bf16 prefill's MLP output products took 14 % less time (BENCHMARKS, session 11);
     * wide chunks of 256-row groups (the MoA's output products) were 12 % slower.
     */
    static final int WIDE_CHUNK = 1024, WIDE_ROWS = 128, WIDE_K = 512;
    /** The narrowest block a call is cut into so that every thread gets one (AMX tiles are 16 columns wide). */
    static final int MIN_CHUNK = 64;
    /** Row counts are rounded up to a multiple of this for the primitive (fewer distinct primitives to create). */
    static final int ROW_STEP = 8;

    private static final int F32 = 3, BF16 = 2, CPU = 1, ARG_SRC = 1, ARG_WEIGHTS = 33, ARG_DST = 17,
            ARG_SCRATCHPAD = 80, QUERY_SCRATCHPAD_MD = 136, QUERY_IMPL_INFO_STR = 8, SCRATCHPAD_USER = 1,
            STREAM_DEFAULT = 1;
    /** sizeof(dnnl_memory_desc_t) and sizeof(dnnl_matmul_desc_t) in oneDNN 2.x (checked against the version at load). */
    private static final long MD_BYTES = 696, MATMUL_DESC_BYTES = 2800;

    /** In {@link #unavailableReason()} when the library is not installed (as opposed to failing to bind). */
    public static final String NOT_INSTALLED = "not installed";

    private static final Object LOCK = new Object();
    private static volatile boolean tried;
    private static volatile OneDnn instance;
    private static volatile String unavailable;

    /** The bound library, or null when it did not load or is switched off ({@link #unavailableReason()} says why). */
    public static OneDnn get() {
        if (!tried) {
            synchronized (LOCK) {
                if (!tried) {
                    String off = System.getProperty("dsmoe.onednn", System.getenv("DSMOE_ONEDNN"));
                    if (off != null && (off.equalsIgnoreCase("off") || off.equalsIgnoreCase("false") || off.equals("0"))) {
                        unavailable = "switched off (dsmoe.onednn / DSMOE_ONEDNN)";
                    } else {
                        try {
                            instance = new OneDnn();
                        } catch (Throwable e) {
                            unavailable = e.getMessage() == null ? e.toString() : e.getMessage();
                        }
                    }
                    tried = true;
                }
            }
        }
        return instance;
    }

    /** Why {@link #get()} returns null, or null when it does not. */
    public static String unavailableReason() {
        get();
        return unavailable;
    }

    /** One line for benchmark tables: which kernels run inference's large products. */
    public static String describe() {
        OneDnn d = get();
        return d == null ? "unpack + sgemm (oneDNN: " + unavailable + ")"
                : "oneDNN " + d.version + " (fp32: " + d.f32Impl + ", bf16: " + d.bf16Name() + ")";
    }

    private final MethodHandle mdInit, matmulInit, pdCreate, pdQueryMd, pdQuery, pdDestroy, mdSize, primCreate,
            memCreate, memSetHandle, execute, streamCreate, streamWait, ompSetThreads;
    /** Primitive attributes: user scratchpad; the same with a sum post-op ({@code dst += src · W}). */
    private final MemorySegment engine, attr, attrSum;
    /** bf16Impl: null where the CPU has no bf16 products ({@link #bf16}). */
    private final String version, f32Impl, bf16Impl;
    private final ThreadLocal<Context> context = ThreadLocal.withInitial(Context::new);

    private OneDnn() throws Throwable {
        Linker linker = Linker.nativeLinker();
        String name = System.getProperty("dsmoe.onednn.lib", "libdnnl.so.2");
        SymbolLookup lib;
        try {
            lib = SymbolLookup.libraryLookup(name, Arena.global());
        } catch (IllegalArgumentException e) {
            throw new UnsupportedOperationException(name + " " + NOT_INSTALLED + " (install Debian's libdnnl2)");
        }
        SymbolLookup gomp;
        try {
            gomp = SymbolLookup.libraryLookup("libgomp.so.1", Arena.global());
        } catch (IllegalArgumentException e) {
            throw new UnsupportedOperationException("libgomp.so.1 " + NOT_INSTALLED + " beside " + name);
        }
        AddressLayout A = ValueLayout.ADDRESS;
        ValueLayout.OfInt I = ValueLayout.JAVA_INT;
        ValueLayout.OfLong J = ValueLayout.JAVA_LONG;
        MethodHandle ver = bind(linker, lib, "dnnl_version", FunctionDescriptor.of(A));
        MemorySegment v = ((MemorySegment) ver.invokeExact()).reinterpret(12);
        int major = v.get(I, 0), minor = v.get(I, 4), patch = v.get(I, 8);
        version = major + "." + minor + "." + patch;
        if (major != 2) throw new UnsupportedOperationException("oneDNN " + version + " found; the binding needs 2.x");
        mdInit = bind(linker, lib, "dnnl_memory_desc_init_by_strides", FunctionDescriptor.of(I, A, I, A, I, A));
        matmulInit = bind(linker, lib, "dnnl_matmul_desc_init", FunctionDescriptor.of(I, A, A, A, A, A));
        pdCreate = bind(linker, lib, "dnnl_primitive_desc_create", FunctionDescriptor.of(I, A, A, A, A, A));
        pdQueryMd = bind(linker, lib, "dnnl_primitive_desc_query_md", FunctionDescriptor.of(A, A, I, I));
        pdQuery = bind(linker, lib, "dnnl_primitive_desc_query", FunctionDescriptor.of(I, A, I, I, A));
        pdDestroy = bind(linker, lib, "dnnl_primitive_desc_destroy", FunctionDescriptor.of(I, A));
        mdSize = bind(linker, lib, "dnnl_memory_desc_get_size", FunctionDescriptor.of(J, A));
        primCreate = bind(linker, lib, "dnnl_primitive_create", FunctionDescriptor.of(I, A, A));
        memCreate = bind(linker, lib, "dnnl_memory_create", FunctionDescriptor.of(I, A, A, A, A));
        memSetHandle = bind(linker, lib, "dnnl_memory_set_data_handle", FunctionDescriptor.of(I, A, A));
        execute = bind(linker, lib, "dnnl_primitive_execute", FunctionDescriptor.of(I, A, A, I, A));
        streamCreate = bind(linker, lib, "dnnl_stream_create", FunctionDescriptor.of(I, A, A, I));
        streamWait = bind(linker, lib, "dnnl_stream_wait", FunctionDescriptor.of(I, A));
        ompSetThreads = bind(linker, gomp, "omp_set_num_threads", FunctionDescriptor.ofVoid(I));
        MethodHandle engineCreate = bind(linker, lib, "dnnl_engine_create", FunctionDescriptor.of(I, A, I, J));
        MethodHandle attrCreate = bind(linker, lib, "dnnl_primitive_attr_create", FunctionDescriptor.of(I, A));
        MethodHandle attrMode = bind(linker, lib, "dnnl_primitive_attr_set_scratchpad_mode", FunctionDescriptor.of(I, A, I));
        MethodHandle postOpsCreate = bind(linker, lib, "dnnl_post_ops_create", FunctionDescriptor.of(I, A));
        MethodHandle appendSum = bind(linker, lib, "dnnl_post_ops_append_sum", FunctionDescriptor.of(I, A, ValueLayout.JAVA_FLOAT));
        MethodHandle setPostOps = bind(linker, lib, "dnnl_primitive_attr_set_post_ops", FunctionDescriptor.of(I, A, A));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(A);
            check((int) engineCreate.invokeExact(out, CPU, 0L), "dnnl_engine_create");
            engine = out.get(A, 0);
            check((int) attrCreate.invokeExact(out), "dnnl_primitive_attr_create");
            attr = out.get(A, 0);
            check((int) attrMode.invokeExact(attr, SCRATCHPAD_USER), "dnnl_primitive_attr_set_scratchpad_mode");
            check((int) attrCreate.invokeExact(out), "dnnl_primitive_attr_create");
            attrSum = out.get(A, 0);
            check((int) attrMode.invokeExact(attrSum, SCRATCHPAD_USER), "dnnl_primitive_attr_set_scratchpad_mode");
            check((int) postOpsCreate.invokeExact(out), "dnnl_post_ops_create");
            MemorySegment postOps = out.get(A, 0);
            check((int) appendSum.invokeExact(postOps, 1f), "dnnl_post_ops_append_sum");
            check((int) setPostOps.invokeExact(attrSum, postOps), "dnnl_primitive_attr_set_post_ops");
        }
        // Creating one of each says which kernels this CPU gets (and fails here, not mid-run, if none).
        // oneDNN 2.x has no bf16 matmul below AVX-512 (an AVX2 CPU, e.g. AMD Zen 3): fp32 products
        // only then, bf16 and Q8_0 weights unpacked to fp32 a column block at a time.
        Context c = context.get();
        f32Impl = c.primitive(false, ROW_STEP, 64, 64, 64).impl;
        String bf16;
        try {
            bf16 = c.primitive(true, ROW_STEP, 64, 64, 64).impl;
        } catch (Unimplemented e) {
            bf16 = null;
        }
        bf16Impl = bf16;
    }

    private static MethodHandle bind(Linker linker, SymbolLookup lib, String name, FunctionDescriptor d) {
        MemorySegment f = lib.find(name).orElseThrow(() -> new UnsupportedOperationException(name + " not found in oneDNN"));
        return linker.downcallHandle(f, d);
    }

    private static void check(int status, String what) {
        if (status == UNIMPLEMENTED) throw new Unimplemented(what + " failed: oneDNN has no kernel for it on this CPU (status 3)");
        if (status != 0) throw new IllegalStateException(what + " failed with oneDNN status " + status);
    }

    /** oneDNN's dnnl_unimplemented: no implementation of a primitive for this CPU. */
    private static final int UNIMPLEMENTED = 3;

    private static final class Unimplemented extends IllegalStateException {
        Unimplemented(String message) {
            super(message);
        }
    }

    /** The kernels oneDNN picked here, fp32 and bf16 (what its results' bits depend on). */
    public String kernelNames() {
        return f32Impl + ", " + bf16Name();
    }

    private String bf16Name() {
        return bf16Impl == null ? "none on this CPU" : bf16Impl;
    }

    /**
     * Whether this CPU has oneDNN's bf16 products (AVX-512 at least): bf16 and Q8_0 weights are then
     * multiplied in bf16 (inputs rounded to bf16), else unpacked to fp32 and multiplied in fp32.
     */
    public boolean bf16() {
        return bf16Impl != null;
    }

    /** Writes weight rows {@code [r0, r0 + rows)} as bf16, {@code k} per row, contiguous from {@code dst}. */
    @FunctionalInterface
    interface Bf16Rows {
        void write(int r0, int rows, MemorySegment dst);
    }

    private static final int[] FIRST = {0};

    /**
     * {@code y[i, j] (+)= Σ_c x[i, c] · W[j, c]} for {@code i < m}: W a weight {@link #reads} takes,
     * {@code [n, k]}; for bf16 and Q8_0 weights the input rows are rounded to bf16. One group of
     * {@link #grouped}: the input rows converted once, blocks of output columns.
     */
    public void product(TensorView w, float[] x, int xOff, int ldx, int m, float[] y, int yOff, int ldy, boolean accumulate) {
        if (m <= 0) return;
        int[] count = context.get().count;
        count[0] = m;
        grouped(w, 1, FIRST, w.rows(), w.cols(), x, xOff, ldx, null, m, FIRST, count, y, yOff, ldy, null, FIRST, accumulate, false);
    }

    /**
     * Grouped products, ScatterMoE's shape with the gather and scatter folded into oneDNN's input
     * conversion and output copy (prefill's expert products, no row-per-expert copy of the input
     * in between): for each group {@code p < groups}, in order, and {@code i < count[p]},
     * <pre>  y[outRow(outStart[p] + i)] (+)= x[inRow(inStart[p] + i)] · W_{expert[p]}ᵀ</pre>
     * where {@code inRow(j)} is {@code inRow[j]} ({@code j} itself when inRow is null), likewise
     * outRow. {@code w} holds the experts ({@link TensorView#expert}: stacked along its rows or
     * side by side along its columns), each {@code [n, k]}. The rows {@code inRow(0 .. srcRows)} are converted once, so groups may share input
     * rows (every expert of a prompt chunk reading its tokens). With {@code shared}, groups add
     * into the same output rows ({@code accumulate} then must be true): the threads split the
     * output columns and each takes the groups in order, so an output row's terms add up in group
     * order whatever the thread count (consecutive groups with the same output rows, as every
     * expert of a prompt chunk, add into oneDNN's buffer through a sum post-op and reach y once);
     * otherwise groups must write disjoint rows and the threads pull (group, column block) pairs. A row's result depends only on its own group's rows.
     */
    public void grouped(TensorView w, int groups, int[] expert, int n, int k, float[] x, int xOff, int ldx, int[] inRow,
                        int srcRows, int[] inStart, int[] count, float[] y, int yOff, int ldy, int[] outRow, int[] outStart,
                        boolean accumulate, boolean shared) {
        if (groups <= 0 || n <= 0) return;
        if (shared && !accumulate) throw new IllegalArgumentException("groups sharing output rows must accumulate");
        if (w.expert(0).cols() != k || w.expert(0).rows() != n) {
            throw new IllegalArgumentException("grouped products: the experts of " + w + " are not [" + n + " x " + k + "]");
        }
        // bf16 products for bf16 and Q8_0 weights where the CPU has them; else their blocks unpacked to fp32
        boolean quantized = !(w instanceof F32Tensor), bf16 = quantized && bf16(), unpack = quantized && !bf16;
        long elem = bf16 ? 2 : 4;
        Context caller = context.get();
        MemorySegment src = caller.src((long) (srcRows + ROW_STEP) * k * elem);
        Parallel.forRange(srcRows, 16, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int row = inRow == null ? r : inRow[r];
                if (bf16) toBf16(x, xOff + row * ldx, k, src, elem * r * k);
                else MemorySegment.copy(x, xOff + row * ldx, src, ValueLayout.JAVA_FLOAT, elem * r * k, k);
            }
        });
        long rows = 0;
        for (int p = 0; p < groups; p++) rows += count[p];
        int chunk = chunkWidth(n, k, groups, rows, shared ? 1 : groups), blocks = (n + chunk - 1) / chunk;
        Parallel.forChunks(shared ? blocks : groups * blocks, 1, (u0, u1) -> {
            Context t = context.get();
            for (int u = u0; u < u1; u++) {
                int pFirst = shared ? 0 : u / blocks, pEnd = shared ? groups : pFirst + 1, c = shared ? u : u % blocks;
                int j0 = c * chunk, nc = Math.min(chunk, n - j0);
                int pending = -1; // shared: the group whose result is in dst, not yet added into y
                for (int p = pFirst; p < pEnd; p++) {
                    int m = count[p];
                    if (m == 0) continue;
                    int mp = (m + ROW_STEP - 1) / ROW_STEP * ROW_STEP;
                    // a group with the same output rows as the pending one adds into oneDNN's buffer (a sum post-op)
                    boolean sum = pending >= 0 && sameRows(outRow, outStart, count, pending, p);
                    if (pending >= 0 && !sum) writeBack(t.dst, pending, outRow, outStart, count, y, yOff, ldy, j0, nc, true);
                    MemorySegment weights;
                    int wld;
                    TensorView we = w.expert(expert[p]);
                    if (unpack) {
                        weights = t.weights((long) nc * k * 4);
                        t.f32Rows(we, j0, nc, k, weights);
                        wld = k;
                    } else if (we instanceof Q8Tensor q) {
                        weights = t.weights((long) nc * k * 2);
                        q.bf16Rows().write(j0, nc, weights);
                        wld = k;
                    } else {
                        weights = we.segment().asSlice(we.byteOffset() + elem * j0 * we.ld());
                        wld = we.ld();
                    }
                    Primitive prim = t.primitive(bf16, mp, nc, k, wld, false, sum);
                    MemorySegment dst = sum ? t.dst : t.dst((long) mp * nc * 4);
                    t.run(prim, src.asSlice(elem * inStart[p] * k), weights, dst);
                    if (shared) pending = p;
                    else writeBack(dst, p, outRow, outStart, count, y, yOff, ldy, j0, nc, accumulate);
                }
                if (pending >= 0) writeBack(t.dst, pending, outRow, outStart, count, y, yOff, ldy, j0, nc, true);
            }
        });
    }

    /**
     * Output columns per oneDNN call: {@link #WIDE_CHUNK} for short groups (on average at most
     * {@link #WIDE_ROWS} rows, k at most {@link #WIDE_K}), else {@link #CHUNK}; narrower, down to
     * {@link #MIN_CHUNK}, when the {@code units} independent column ranges would give fewer blocks
     * than threads (a prompt's K and V products, 128 columns, had run on one thread). The width
     * changes no bits: oneDNN's sum over k for an output does not depend on the columns beside it.
     */
    static int chunkWidth(int n, int k, int groups, long rows, int units) {
        int chunk = rows <= (long) WIDE_ROWS * groups && k <= WIDE_K ? WIDE_CHUNK : CHUNK, threads = Parallel.threads();
        if ((long) units * ((n + chunk - 1) / chunk) < threads) {
            int perThread = (n + threads - 1) / threads;
            chunk = Math.max(MIN_CHUNK, (perThread + MIN_CHUNK - 1) / MIN_CHUNK * MIN_CHUNK);
        }
        return chunk;
    }

    /** Whether groups a and b write the same output rows, in the same order. */
    private static boolean sameRows(int[] outRow, int[] outStart, int[] count, int a, int b) {
        if (count[a] != count[b]) return false;
        for (int i = 0; i < count[a]; i++) {
            int ra = outStart[a] + i, rb = outStart[b] + i;
            if ((outRow == null ? ra : outRow[ra]) != (outRow == null ? rb : outRow[rb])) return false;
        }
        return true;
    }

    /** Adds ({@code accumulate}) or copies group p's block of results (in dst, {@code nc} columns from j0) into its output rows. */
    private static void writeBack(MemorySegment dst, int p, int[] outRow, int[] outStart, int[] count, float[] y, int yOff,
                                  int ldy, int j0, int nc, boolean accumulate) {
        for (int i = 0; i < count[p]; i++) {
            int o = outStart[p] + i, yRow = yOff + (outRow == null ? o : outRow[o]) * ldy + j0;
            if (accumulate) addInto(dst, 4L * i * nc, y, yRow, nc);
            else MemorySegment.copy(dst, ValueLayout.JAVA_FLOAT, 4L * i * nc, y, yRow, nc);
        }
    }

    /** Whether {@link #grouped} can read this weight (fp32 in native memory, bf16, Q8_0). */
    public static boolean reads(TensorView w) {
        return w instanceof Q8Tensor || (w instanceof Bf16Tensor && w.segment().isNative())
                || (w instanceof F32Tensor f && !f.onHeap() && f.segment().isNative());
    }

    /**
     * One fp32 product on the calling thread between native buffers, for kernels that keep their
     * operands off the heap ({@link PromptAttention}): {@code dst[m, n] = src[m, k] · B} where B is
     * {@code w} as {@code [k, n]} with row stride ld ({@code kMajor}) or its transpose stored
     * {@code [n, k]}; src rows contiguous, dst rows contiguous. m is used as given (no rounding).
     */
    void nativeF32(MemorySegment src, int m, MemorySegment w, int ld, boolean kMajor, int n, int k, MemorySegment dst) {
        Context t = context.get();
        t.run(t.primitive(false, m, n, k, ld, kMajor, false), src, w, dst);
    }

    private static final VectorSpecies<Float> FS = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> SS = VectorSpecies.of(short.class, VectorShape.forBitSize(FS.vectorBitSize() / 2));
    private static final ValueLayout.OfShort BF16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** {@code n} floats rounded to bf16 (nearest, ties to even, as {@link Bf16#fromFloat}) into {@code dst} at byte {@code dstOff}. */
    static void toBf16(float[] src, int srcOff, int n, MemorySegment dst, long dstOff) {
        int i = 0;
        for (int bound = FS.loopBound(n); i < bound; i += FS.length()) {
            storeBf16(FloatVector.fromArray(FS, src, srcOff + i), dst, dstOff + 2L * i);
        }
        for (; i < n; i++) dst.set(BF16_LE, dstOff + 2L * i, Bf16.fromFloat(src[srcOff + i]));
    }

    /** Stores a vector's lanes rounded to bf16 (as {@link Bf16#fromFloat}, NaN kept a quiet NaN) at byte {@code off}. */
    static void storeBf16(FloatVector v, MemorySegment dst, long off) {
        IntVector bits = v.reinterpretAsInts();
        IntVector high = bits.lanewise(VectorOperators.LSHR, 16);
        IntVector rounded = bits.add(high.and(1).add(0x7fff)).lanewise(VectorOperators.LSHR, 16);
        VectorMask<Integer> nan = bits.and(0x7fffffff).compare(VectorOperators.GT, 0x7f800000);
        rounded = rounded.blend(high.or(0x40), nan);
        ((ShortVector) rounded.convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(dst, off, ByteOrder.LITTLE_ENDIAN);
    }

    private static final VectorSpecies<Integer> IS = VectorSpecies.of(int.class, FS.vectorShape());

    /**
     * {@code y[yOff + i] += src[i]} for {@code i < n}, src fp32 at byte {@code off} of a native
     * segment. Read as ints and reinterpreted, never by {@code FloatVector.fromMemorySegment}: that
     * method's type profile is shared by the whole process, and a native segment seen there made
     * C2 compile the decode kernels (which read weights through it) for two segment classes, a
     * type switch on every weight load: batched q8_0 decode after a oneDNN prompt ran at 0.68x
     * (BENCHMARKS, session 10).
     */
    private static void addInto(MemorySegment src, long off, float[] y, int yOff, int n) {
        int i = 0;
        for (int bound = FS.loopBound(n); i < bound; i += FS.length()) {
            IntVector.fromMemorySegment(IS, src, off + 4L * i, ByteOrder.nativeOrder()).reinterpretAsFloats()
                    .add(FloatVector.fromArray(FS, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (; i < n; i++) y[yOff + i] += src.get(ValueLayout.JAVA_FLOAT, off + 4L * i);
    }

    private record Key(boolean bf16, int m, int n, int k, int ld, boolean kMajor, boolean sum) {}

    /** A matmul primitive for one shape, with the memory objects its calls point at their buffers. */
    private static final class Primitive {
        MemorySegment prim, srcMem, weightsMem, dstMem, scratchMem, args;
        long scratchBytes;
        int nargs;
        String impl;
    }

    /** One thread's stream, primitives and native buffers (oneDNN primitives are not shared between threads). */
    private final class Context {
        private final Arena arena = Arena.ofAuto();
        private final MemorySegment stream;
        private final Map<Key, Primitive> primitives = new HashMap<>();
        /** {@link #product}'s one group's row count (read by the pool's threads during the call). */
        final int[] count = new int[1];
        private MemorySegment src = MemorySegment.NULL, dst = MemorySegment.NULL, weights = MemorySegment.NULL,
                scratch = MemorySegment.NULL;
        /** One weight row unpacked to fp32 ({@link #f32Rows}). */
        private float[] row = new float[0];

        Context() {
            try {
                ompSetThreads.invokeExact(1);
                MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
                check((int) streamCreate.invokeExact(out, engine, STREAM_DEFAULT), "dnnl_stream_create");
                stream = out.get(ValueLayout.ADDRESS, 0);
            } catch (RuntimeException | Error e) {
                throw e;
            } catch (Throwable e) {
                throw new IllegalStateException(e);
            }
        }

        MemorySegment src(long bytes) {
            if (src.byteSize() < bytes) src = Arena.ofAuto().allocate(grow(src.byteSize(), bytes), 64);
            return src;
        }

        MemorySegment dst(long bytes) {
            if (dst.byteSize() < bytes) dst = Arena.ofAuto().allocate(grow(dst.byteSize(), bytes), 64);
            return dst;
        }

        /** Rows {@code [r0, r0 + rows)} of w ({@code k} values each) as fp32, contiguous from {@code dst}. */
        void f32Rows(TensorView w, int r0, int rows, int k, MemorySegment dst) {
            if (row.length < k) row = new float[k];
            for (int i = 0; i < rows; i++) {
                w.copyRow(r0 + i, row, 0);
                MemorySegment.copy(row, 0, dst, ValueLayout.JAVA_FLOAT, 4L * i * k, k);
            }
        }

        MemorySegment weights(long bytes) {
            if (weights.byteSize() < bytes) weights = Arena.ofAuto().allocate(grow(weights.byteSize(), bytes), 64);
            return weights;
        }

        private static long grow(long have, long need) {
            return Math.max(need, have + have / 2);
        }

        Primitive primitive(boolean bf16, int m, int n, int k, int ld) {
            return primitive(bf16, m, n, k, ld, false, false);
        }

        /** kMajor: the weight stored {@code [k, n]} (row stride ld), else {@code [n, k]}; sum: add into dst. */
        Primitive primitive(boolean bf16, int m, int n, int k, int ld, boolean kMajor, boolean sum) {
            Key key = new Key(bf16, m, n, k, ld, kMajor, sum);
            Primitive p = primitives.get(key);
            if (p == null) {
                try {
                    p = create(bf16, m, n, k, ld, kMajor, sum);
                } catch (RuntimeException | Error e) {
                    throw e;
                } catch (Throwable e) {
                    throw new IllegalStateException("oneDNN matmul " + key + ": " + e, e);
                }
                primitives.put(key, p);
            }
            return p;
        }

        private Primitive create(boolean bf16, int m, int n, int k, int ld, boolean kMajor, boolean sum) throws Throwable {
            int type = bf16 ? BF16 : F32;
            Primitive p = new Primitive();
            try (Arena a = Arena.ofConfined()) {
                MemorySegment dims = a.allocate(ValueLayout.JAVA_LONG, 12), strides = a.allocate(ValueLayout.JAVA_LONG, 12);
                MemorySegment srcMd = a.allocate(MD_BYTES, 8), wMd = a.allocate(MD_BYTES, 8), dstMd = a.allocate(MD_BYTES, 8);
                desc(srcMd, dims, strides, m, k, k, 1, type);
                if (kMajor) desc(wMd, dims, strides, k, n, ld, 1, type);
                else desc(wMd, dims, strides, k, n, 1, ld, type);      // W [n, k] read as its transpose [k, n]
                desc(dstMd, dims, strides, m, n, n, 1, F32);
                MemorySegment op = a.allocate(MATMUL_DESC_BYTES, 8);
                check((int) matmulInit.invokeExact(op, srcMd, wMd, MemorySegment.NULL, dstMd), "dnnl_matmul_desc_init");
                MemorySegment out = a.allocate(ValueLayout.ADDRESS);
                MemorySegment attributes = sum ? attrSum : attr; // a local: invokeExact takes a conditional as Object
                check((int) pdCreate.invokeExact(out, op, attributes, engine, MemorySegment.NULL), "dnnl_primitive_desc_create");
                MemorySegment pd = out.get(ValueLayout.ADDRESS, 0);
                try {
                    check((int) pdQuery.invokeExact(pd, QUERY_IMPL_INFO_STR, 0, out), "dnnl_primitive_desc_query");
                    p.impl = out.get(ValueLayout.ADDRESS, 0).reinterpret(256).getString(0);
                    MemorySegment padMd = (MemorySegment) pdQueryMd.invokeExact(pd, QUERY_SCRATCHPAD_MD, 0);
                    p.scratchBytes = padMd.address() == 0 ? 0 : (long) mdSize.invokeExact(padMd);
                    check((int) primCreate.invokeExact(out, pd), "dnnl_primitive_create");
                    p.prim = out.get(ValueLayout.ADDRESS, 0);
                    p.srcMem = memory(srcMd, out);
                    p.weightsMem = memory(wMd, out);
                    p.dstMem = memory(dstMd, out);
                    p.scratchMem = p.scratchBytes > 0 ? memory(padMd, out) : null;
                } finally {
                    check((int) pdDestroy.invokeExact(pd), "dnnl_primitive_desc_destroy");
                }
            }
            p.nargs = p.scratchMem == null ? 3 : 4;
            p.args = arena.allocate(16L * p.nargs, 8);
            int[] ids = {ARG_SRC, ARG_WEIGHTS, ARG_DST, ARG_SCRATCHPAD};
            MemorySegment[] mems = {p.srcMem, p.weightsMem, p.dstMem, p.scratchMem};
            for (int i = 0; i < p.nargs; i++) {
                p.args.set(ValueLayout.JAVA_INT, 16L * i, ids[i]);
                p.args.set(ValueLayout.ADDRESS, 16L * i + 8, mems[i]);
            }
            return p;
        }

        private void desc(MemorySegment md, MemorySegment dims, MemorySegment strides, long d0, long d1, long s0, long s1,
                          int type) throws Throwable {
            dims.set(ValueLayout.JAVA_LONG, 0, d0);
            dims.set(ValueLayout.JAVA_LONG, 8, d1);
            strides.set(ValueLayout.JAVA_LONG, 0, s0);
            strides.set(ValueLayout.JAVA_LONG, 8, s1);
            check((int) mdInit.invokeExact(md, 2, dims, type, strides), "dnnl_memory_desc_init_by_strides");
        }

        private MemorySegment memory(MemorySegment md, MemorySegment out) throws Throwable {
            check((int) memCreate.invokeExact(out, md, engine, MemorySegment.NULL), "dnnl_memory_create");
            return out.get(ValueLayout.ADDRESS, 0);
        }

        void run(Primitive p, MemorySegment srcData, MemorySegment weightsData, MemorySegment dstData) {
            try {
                check((int) memSetHandle.invokeExact(p.srcMem, srcData), "dnnl_memory_set_data_handle");
                check((int) memSetHandle.invokeExact(p.weightsMem, weightsData), "dnnl_memory_set_data_handle");
                check((int) memSetHandle.invokeExact(p.dstMem, dstData), "dnnl_memory_set_data_handle");
                if (p.scratchMem != null) {
                    if (scratch.byteSize() < p.scratchBytes) scratch = Arena.ofAuto().allocate(p.scratchBytes, 64);
                    check((int) memSetHandle.invokeExact(p.scratchMem, scratch), "dnnl_memory_set_data_handle");
                }
                check((int) execute.invokeExact(p.prim, stream, p.nargs, p.args), "dnnl_primitive_execute");
                check((int) streamWait.invokeExact(stream), "dnnl_stream_wait");
            } catch (RuntimeException | Error e) {
                throw e;
            } catch (Throwable e) {
                throw new IllegalStateException(e);
            }
        }
    }
}
