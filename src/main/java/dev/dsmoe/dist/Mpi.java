package dev.dsmoe.dist;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The MPI job this process belongs to, through Open MPI's C library bound with the FFM API (as
 * {@code kernels.BlasGemm} binds OpenBLAS): {@code MPI_Init_thread}, {@code MPI_Comm_rank/size},
 * {@code MPI_Bcast}, {@code MPI_Allreduce}, {@code MPI_Abort}, {@code MPI_Finalize}.
 *
 * <p>Open MPI specifics this relies on (Open MPI 4.1 in Debian 12, 5.0 in Debian 13; both
 * {@code libmpi.so.40}): the handles {@code MPI_COMM_WORLD}, {@code MPI_FLOAT}, {@code MPI_SUM}
 * are the addresses of the exported globals {@code ompi_mpi_comm_world}, {@code ompi_mpi_float},
 * {@code ompi_mpi_op_sum}; {@code MPI_IN_PLACE} is {@code (void*)1}. libmpi is opened with
 * {@code dlopen(RTLD_GLOBAL)}: its plugins ({@code mca_*.so}) are loaded later and resolve
 * libmpi's symbols from the global namespace, which a plain {@code System.load} (RTLD_LOCAL)
 * does not offer. Before {@code MPI_Init} the process sets {@code UCX_ERROR_SIGNALS} to empty
 * unless it is set: UCX otherwise installs its own SIGSEGV handler over the JVM's, which uses
 * SIGSEGV for safepoints and null checks, and the first such signal kills the rank.
 *
 * <p>Sums and broadcasts go through one off-heap bucket (8 MiB unless
 * {@code DSMOE_MPI_BUCKET_MB} says otherwise): a bucket of the Java array is copied in, reduced in
 * place across ranks, and copied back. So no second full-size buffer is needed, and no MPI call
 * pins the Java heap while it waits for another rank. All calls come from the thread that
 * initialised MPI ({@code MPI_THREAD_FUNNELED}).
 */
public final class Mpi implements Dist {

    private static final int RTLD_NOW = 2, RTLD_GLOBAL = 0x100;
    private static final int MPI_THREAD_FUNNELED = 1; // Open MPI's value (mpi.h)
    private static final MemorySegment IN_PLACE = MemorySegment.ofAddress(1);

    private final MethodHandle bcast, allreduce, abort, finalizeFn;
    private final MemorySegment comm, mpiFloat, mpiDouble, mpiByte, opSum;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment bucket;
    private final int rank, size;
    private final String library;
    private boolean closed;

    private Mpi(SymbolLookup lib, String library) {
        Linker linker = Linker.nativeLinker();
        this.library = library;
        comm = symbol(lib, "ompi_mpi_comm_world");
        mpiFloat = symbol(lib, "ompi_mpi_float");
        mpiDouble = symbol(lib, "ompi_mpi_double");
        mpiByte = symbol(lib, "ompi_mpi_byte");
        opSum = symbol(lib, "ompi_mpi_op_sum");
        ValueLayout.OfInt I = ValueLayout.JAVA_INT;
        ValueLayout A = ValueLayout.ADDRESS;
        MethodHandle init = linker.downcallHandle(symbol(lib, "MPI_Init_thread"), FunctionDescriptor.of(I, A, A, I, A));
        MethodHandle commRank = linker.downcallHandle(symbol(lib, "MPI_Comm_rank"), FunctionDescriptor.of(I, A, A));
        MethodHandle commSize = linker.downcallHandle(symbol(lib, "MPI_Comm_size"), FunctionDescriptor.of(I, A, A));
        bcast = linker.downcallHandle(symbol(lib, "MPI_Bcast"), FunctionDescriptor.of(I, A, I, A, I, A));
        allreduce = linker.downcallHandle(symbol(lib, "MPI_Allreduce"), FunctionDescriptor.of(I, A, A, I, A, A, A));
        abort = linker.downcallHandle(symbol(lib, "MPI_Abort"), FunctionDescriptor.of(I, A, I));
        finalizeFn = linker.downcallHandle(symbol(lib, "MPI_Finalize"), FunctionDescriptor.of(I));
        long mb = 8;
        String env = System.getenv("DSMOE_MPI_BUCKET_MB");
        if (env != null && !env.isBlank()) mb = Math.max(1, Long.parseLong(env.trim()));
        bucket = arena.allocate(mb << 20, 64);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment provided = a.allocate(ValueLayout.JAVA_INT);
            check("MPI_Init_thread", (int) init.invokeExact(MemorySegment.NULL, MemorySegment.NULL, MPI_THREAD_FUNNELED, provided));
            MemorySegment out = a.allocate(ValueLayout.JAVA_INT);
            check("MPI_Comm_rank", (int) commRank.invokeExact(comm, out));
            rank = out.get(ValueLayout.JAVA_INT, 0);
            check("MPI_Comm_size", (int) commSize.invokeExact(comm, out));
            size = out.get(ValueLayout.JAVA_INT, 0);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Whether this process was started by an MPI launcher: Open MPI's {@code mpirun} sets
     * {@code OMPI_COMM_WORLD_SIZE}, a PMIx launcher ({@code srun --mpi=pmix}, Open MPI 5's
     * {@code prterun}) sets {@code PMIX_RANK}.
     */
    public static boolean launched(Map<String, String> env) {
        return env.containsKey("OMPI_COMM_WORLD_SIZE") || env.containsKey("PMIX_RANK");
    }

    /**
     * Loads libmpi and joins the job ({@code MPI_Init_thread}).
     *
     * @throws UnsupportedOperationException with the reason (one line) when libmpi cannot load
     */
    public static Mpi init() {
        Linker linker = Linker.nativeLinker();
        SymbolLookup libc = linker.defaultLookup();
        MethodHandle dlopen = linker.downcallHandle(libc.find("dlopen").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        MethodHandle dlsym = linker.downcallHandle(libc.find("dlsym").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS));
        MethodHandle dlerror = linker.downcallHandle(libc.find("dlerror").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.ADDRESS.withTargetLayout(
                        java.lang.foreign.MemoryLayout.sequenceLayout(4096, ValueLayout.JAVA_BYTE))));
        MethodHandle setenv = linker.downcallHandle(libc.find("setenv").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        List<String> candidates = new ArrayList<>();
        String given = System.getenv("DSMOE_LIBMPI");
        if (given != null && !given.isBlank()) {
            candidates.add(given);
        } else {
            // The soname first (Debian/Ubuntu multiarch paths are on the loader's search path), then
            // the development symlink, then Fedora/RHEL's module directory.
            candidates.addAll(List.of("libmpi.so.40", "libmpi.so", "/usr/lib64/openmpi/lib/libmpi.so.40"));
        }
        Arena global = Arena.global();
        MemorySegment handle = MemorySegment.NULL;
        String used = null;
        List<String> errors = new ArrayList<>();
        try {
            for (String c : candidates) {
                handle = (MemorySegment) dlopen.invokeExact(global.allocateFrom(c), RTLD_NOW | RTLD_GLOBAL);
                if (!handle.equals(MemorySegment.NULL)) {
                    used = c;
                    break;
                }
                MemorySegment err = (MemorySegment) dlerror.invokeExact();
                errors.add(err.equals(MemorySegment.NULL) ? c : err.getString(0));
            }
            if (used == null) {
                throw new UnsupportedOperationException("libmpi did not load (" + String.join("; ", errors)
                        + "); install Open MPI (Debian: apt-get install openmpi-bin) or name the library in DSMOE_LIBMPI");
            }
            // Keep the JVM's SIGSEGV handler: see the class comment. setenv's last argument 0: a value the user set wins.
            int unused = (int) setenv.invokeExact(global.allocateFrom("UCX_ERROR_SIGNALS"), global.allocateFrom(""), 0);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
        MemorySegment h = handle;
        SymbolLookup lib = name -> {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment s = (MemorySegment) dlsym.invokeExact(h, a.allocateFrom(name));
                return s.equals(MemorySegment.NULL) ? java.util.Optional.empty() : java.util.Optional.of(s);
            } catch (Throwable e) {
                throw new IllegalStateException(e);
            }
        };
        return new Mpi(lib, used);
    }

    private static MemorySegment symbol(SymbolLookup lib, String name) {
        return lib.find(name).orElseThrow(() -> new UnsupportedOperationException(
                "libmpi has no symbol " + name + "; this build binds Open MPI (4.1 or 5), not another MPI"));
    }

    private static void check(String call, int rc) {
        if (rc != 0) throw new IllegalStateException(call + " failed with MPI error " + rc);
    }

    @Override public int rank() { return rank; }

    @Override public int size() { return size; }

    @Override
    public String describe() {
        return "MPI rank " + rank + " of " + size + " (" + library + ")";
    }

    @Override
    public void broadcast(float[] a, int off, int len) {
        java.util.Objects.checkFromIndexSize(off, len, a.length);
        int per = (int) Math.min(Integer.MAX_VALUE, bucket.byteSize() / Float.BYTES);
        for (int done = 0; done < len; ) {
            int n = Math.min(per, len - done);
            if (rank == 0) MemorySegment.copy(a, off + done, bucket, ValueLayout.JAVA_FLOAT, 0, n);
            try {
                check("MPI_Bcast", (int) bcast.invokeExact(bucket, n, mpiFloat, 0, comm));
            } catch (RuntimeException e) {
                throw e;
            } catch (Throwable e) {
                throw new IllegalStateException(e);
            }
            if (rank != 0) MemorySegment.copy(bucket, ValueLayout.JAVA_FLOAT, 0, a, off + done, n);
            done += n;
        }
    }

    @Override
    public void broadcast(byte[] a) {
        try (Arena t = Arena.ofConfined()) {
            MemorySegment s = t.allocate(Math.max(1, a.length));
            MemorySegment.copy(a, 0, s, ValueLayout.JAVA_BYTE, 0, a.length);
            check("MPI_Bcast", (int) bcast.invokeExact(s, a.length, mpiByte, 0, comm));
            MemorySegment.copy(s, ValueLayout.JAVA_BYTE, 0, a, 0, a.length);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public void allreduceSum(float[] a, int off, int len) {
        java.util.Objects.checkFromIndexSize(off, len, a.length);
        int per = (int) Math.min(Integer.MAX_VALUE, bucket.byteSize() / Float.BYTES);
        for (int done = 0; done < len; ) {
            int n = Math.min(per, len - done);
            MemorySegment.copy(a, off + done, bucket, ValueLayout.JAVA_FLOAT, 0, n);
            try {
                check("MPI_Allreduce", (int) allreduce.invokeExact(IN_PLACE, bucket, n, mpiFloat, opSum, comm));
            } catch (RuntimeException e) {
                throw e;
            } catch (Throwable e) {
                throw new IllegalStateException(e);
            }
            MemorySegment.copy(bucket, ValueLayout.JAVA_FLOAT, 0, a, off + done, n);
            done += n;
        }
    }

    @Override
    public void allreduceSum(double[] a) {
        if (a.length * (long) Double.BYTES > bucket.byteSize()) throw new IllegalArgumentException("more doubles than a bucket holds");
        MemorySegment.copy(a, 0, bucket, ValueLayout.JAVA_DOUBLE, 0, a.length);
        try {
            check("MPI_Allreduce", (int) allreduce.invokeExact(IN_PLACE, bucket, a.length, mpiDouble, opSum, comm));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
        MemorySegment.copy(bucket, ValueLayout.JAVA_DOUBLE, 0, a, 0, a.length);
    }

    @Override
    public void abort(int status) {
        System.err.flush();
        System.out.flush();
        try {
            int unused = (int) abort.invokeExact(comm, status);
        } catch (Throwable e) {
            // fall through: the process ends either way
        }
        Runtime.getRuntime().halt(status);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        try {
            check("MPI_Finalize", (int) finalizeFn.invokeExact());
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }
}
