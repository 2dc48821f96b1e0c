package dev.dsmoe.cli;

import dev.dsmoe.io.AtomicFiles;
import dev.dsmoe.kernels.Kernels;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.train.TrainerState;
import java.io.IOException;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Properties;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import static picocli.CommandLine.ScopeType.INHERIT;

/**
 * How the engine computes, as the command line chooses it: this mixin of {@link Main} holds
 * {@code --kernels} and {@code --threads}, which every verb inherits, and {@link Dtype} the
 * inference verbs' {@code --dtype}. The one place the command line selects the GEMM backend and
 * the thread count, and parses the weight type.
 */
final class ComputeOptions {

    @CommandLine.Spec(CommandLine.Spec.Target.MIXEE)
    CommandSpec mixee;

    @Option(names = "--kernels", scope = INHERIT, paramLabel = "auto|blas|java",
            description = "GEMM backend: OpenBLAS (blas), pure Java Vector API (java), or auto (default: the faster of the two"
                    + " here, measured once and kept in ~/.cache/dsmoe; Java when OpenBLAS does not load).")
    void kernels(String value) {
        try {
            useKernels(value);
        } catch (IllegalArgumentException | UnsupportedOperationException e) {
            throw new CommandLine.ParameterException(mixee.commandLine(), "--kernels: " + e.getMessage());
        }
    }

    @Option(names = "--threads", scope = INHERIT, paramLabel = "N",
            description = "Worker threads (default: the machine's cores, or DSMOE_THREADS).")
    void threads(int n) {
        if (n < 1) throw new CommandLine.ParameterException(mixee.commandLine(), "--threads must be >= 1, got " + n);
        useThreads(n);
    }

    /** The GEMM backend in use ({@code blas} or {@code java}). */
    static String kernels() {
        return Kernels.gemm().name();
    }

    /** The worker threads in use. */
    static int threads() {
        return Parallel.threads();
    }

    /**
     * Selects the GEMM backend by name ({@code auto}, {@code blas}, {@code java}); throws
     * IllegalArgumentException for another name, UnsupportedOperationException or a LinkageError
     * when the backend does not load here.
     */
    static void useKernels(String name) {
        Kernels.select(Kernels.parse(name));
    }

    /** Java must beat OpenBLAS by this factor for auto to pick it (OpenBLAS is the documented default). */
    static final double JAVA_MARGIN = 1.10;

    /**
     * {@link Kernels.Backend#AUTO}'s choice once OpenBLAS loads, installed by {@link Main}: the
     * backend that ran {@link Kernels#measure}'s training products faster on this machine (Java
     * only when {@value #JAVA_MARGIN}x faster). Measured once per machine, thread count and
     * {@code OPENBLAS_CORETYPE} (which makes OpenBLAS 25-35 % slower here, see BENCHMARKS.md) and
     * kept in {@link #cacheDir()}{@code /kernels.properties}, so every later command, and a
     * resumed training run, computes with the same backend; one stderr line reports a measurement.
     * A cache that cannot be read or written is measured again, with a note.
     */
    static Kernels.Backend measuredChoice() {
        Path file = cacheDir().resolve("kernels.properties");
        String key = machineKey();
        Properties kept = new Properties();
        try (var in = Files.newBufferedReader(file)) {
            kept.load(in);
        } catch (IOException | IllegalArgumentException e) {
            kept.clear(); // absent, unreadable or corrupt: measure
        }
        String v = kept.getProperty(key, "");
        if (v.startsWith("java ")) return Kernels.Backend.JAVA;
        if (v.startsWith("blas ")) return Kernels.Backend.BLAS;
        Kernels.Speed s = Kernels.measure();
        Kernels.Backend pick = s.javaGflops() > JAVA_MARGIN * s.blasGflops() ? Kernels.Backend.JAVA : Kernels.Backend.BLAS;
        String name = pick == Kernels.Backend.JAVA ? "java" : "blas";
        kept.setProperty(key, String.format(Locale.ROOT, "%s (OpenBLAS %.1f, Java %.1f GFLOP/s, %s)", name,
                s.blasGflops(), s.javaGflops(), java.time.Instant.now().truncatedTo(java.time.temporal.ChronoUnit.SECONDS)));
        String where;
        try {
            Files.createDirectories(file.getParent());
            StringWriter text = new StringWriter();
            kept.store(text, "dsmoe --kernels auto: the faster GEMM backend per machine (delete to measure again)");
            AtomicFiles.writeString(file, text.toString());
            where = "kept in " + file + " (delete it to measure again)";
        } catch (IOException | RuntimeException e) {
            where = "not kept (" + file + ": " + e.getMessage() + ")";
        }
        String coretype = System.getenv("OPENBLAS_CORETYPE");
        System.err.printf(Locale.ROOT, "dsmoe: --kernels auto: OpenBLAS %.0f, Java %.0f GFLOP/s on training products here "
                        + "(%d threads%s): using %s; %s; --kernels blas|java chooses%n", s.blasGflops(), s.javaGflops(),
                Parallel.threads(), coretype == null ? "" : ", OPENBLAS_CORETYPE=" + coretype, name, where);
        return pick;
    }

    /**
     * Where measurements are kept: the system property {@code dsmoe.cacheDir} (tests), else
     * DSMOE_CACHE_DIR, else XDG_CACHE_HOME/dsmoe, else ~/.cache/dsmoe.
     */
    static Path cacheDir() {
        String dir = System.getProperty("dsmoe.cacheDir", System.getenv("DSMOE_CACHE_DIR"));
        if (dir != null && !dir.isBlank()) return Path.of(dir);
        String xdg = System.getenv("XDG_CACHE_HOME");
        if (xdg != null && !xdg.isBlank()) return Path.of(xdg, "dsmoe");
        return Path.of(System.getProperty("user.home"), ".cache", "dsmoe");
    }

    /** What the backends' speeds depend on: the CPU, the threads, OpenBLAS's kernel choice, the JDK. */
    static String machineKey() {
        String cpu = System.getProperty("os.arch");
        try (var lines = Files.lines(Path.of("/proc/cpuinfo"))) {
            cpu = lines.filter(l -> l.startsWith("model name")).map(l -> l.substring(l.indexOf(':') + 1).trim())
                    .findFirst().orElse(cpu);
        } catch (IOException | java.io.UncheckedIOException e) {
            // not Linux: the architecture stands for the CPU
        }
        String coretype = System.getenv("OPENBLAS_CORETYPE");
        return cpu + ", " + Runtime.getRuntime().availableProcessors() + " cores, " + Parallel.threads() + " threads, OPENBLAS_CORETYPE="
                + (coretype == null ? "unset" : coretype) + ", Java " + Runtime.version().feature();
    }

    static void useThreads(int n) {
        Parallel.setThreads(n);
    }

    /**
     * Selects the GEMM backend and thread count the saved run in {@code dir} computes with (both
     * change the rounding), each unless the command line gave it ({@code keepKernels},
     * {@code keepThreads}); a saved backend that does not load here is bad input that begins with
     * {@code where}. A format-1 state recorded neither: the current ones stay, and the note
     * returned says so (null otherwise).
     */
    static String useSaved(TrainerState s, Path dir, String where, boolean keepKernels, boolean keepThreads) {
        if (s.legacy()) {
            return dir.resolve(TrainerState.FILE) + " is from an older build (format " + s.format() + "): continuing on "
                    + kernels() + " kernels, " + threads() + " threads, without checking the data's fingerprint;"
                    + " all three are recorded from now on";
        }
        if (!keepKernels) {
            try {
                useKernels(s.kernels());
            } catch (UnsupportedOperationException | LinkageError e) {
                throw new IllegalArgumentException(where + ": the run computes with the " + s.kernels()
                        + " kernels, which do not load here (" + e.getMessage() + "); it can only continue where they do");
            }
        }
        if (!keepThreads) useThreads(s.threads());
        return null;
    }

    /**
     * Mixin of eval, generate, bench infer and serve: {@code --dtype}, the weights' type in memory. Not
     * given, a model directory loads in the type it is stored in (a quantized checkpoint's, else
     * fp32) and a preset with random weights in fp32; a quantized checkpoint is refused in any
     * other type (it is not converted back: load the checkpoint it was made from instead).
     */
    static final class Dtype {
        @CommandLine.Spec(CommandLine.Spec.Target.MIXEE)
        CommandSpec mixee;

        private MatVec.DType value;

        /** Parsed as picocli sets it: another value is bad input before the verb runs. */
        @Option(names = "--dtype", paramLabel = "f32|bf16|q8_0",
                description = {"Weight type in memory: f32, bf16 or q8_0 (int8, llama.cpp's Q8_0), converted or quantized at load.",
                        "Default: the type the model is stored in (a checkpoint made by 'dsmoe quantize' loads as it is, memory-mapped,"
                                + " and only in its own type), f32 otherwise."})
        void set(String name) {
            try {
                value = MatVec.DType.parse(name);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(mixee.commandLine(), "--dtype: " + e.getMessage());
            }
        }

        /** The weight type for a model that is not stored quantized (random weights): as given, else fp32. */
        MatVec.DType get() {
            return value != null ? value : MatVec.DType.F32;
        }

        /**
         * The weight type to load the model directory {@code dir} in: its stored quantization, else
         * as given, else fp32. A {@code --dtype} other than a quantized checkpoint's own type is bad
         * input, in one line naming the fix. A missing or unreadable config.json is left to the load.
         */
        MatVec.DType forModel(java.nio.file.Path dir) {
            MatVec.DType stored;
            try {
                stored = dev.dsmoe.io.ModelFiles.readStored(dir).quantization();
            } catch (java.io.IOException e) {
                return get(); // the load reads the same file and names what is wrong
            }
            if (stored == null) return get();
            if (value != null && value != stored) {
                throw new Errors.UserError("--dtype " + label(value) + ": " + dir + " holds " + label(stored)
                        + " weights (made by 'dsmoe quantize'), which load only as they are; drop --dtype, or give --model the fp32"
                        + " checkpoint they were quantized from to load it as " + label(value));
            }
            return stored;
        }

        /** The weight type as the tables print it: f32, bf16 or q8_0. */
        static String label(MatVec.DType t) {
            return t.name().toLowerCase(Locale.ROOT);
        }
    }
}
