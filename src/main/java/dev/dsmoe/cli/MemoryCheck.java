package dev.dsmoe.cli;

import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.infer.KvCache;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.train.Trainer;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.function.Supplier;
import java.util.stream.Collectors;

/**
 * Refuses, before anything is allocated, a run whose {@link Footprint} does not fit: heap arrays
 * against the heap ({@link Runtime#maxMemory()}), mapped files and off-heap memory against the
 * machine's memory less those arrays. The message is one line: what it needs, by its largest
 * parts, what there is, and the fix.
 */
final class MemoryCheck {

    private static final String TRAIN_FIX = "lower --batch/--seq or the model's sizes, or raise DSMOE_HEAP (e.g. DSMOE_HEAP=16g)";
    private static final String INFER_FIX = "use a smaller model, or raise DSMOE_HEAP (e.g. DSMOE_HEAP=16g)";

    private MemoryCheck() {}

    /**
     * Training (train, bench train, quickstart) of {@code c}; {@code resume}: continuing a
     * checkpoint of it (which reads its AdamW moments besides).
     */
    static void training(ModelConfig c, boolean resume, int batch, int seqLen) {
        check(() -> Trainer.footprint(c, batch, seqLen, resume), TRAIN_FIX);
    }

    /**
     * Loading the model in {@code dir} as {@code dtype} and running an engine with a context of
     * {@code context} positions (at most the model's). A missing or unreadable file is left to
     * the load, which names it.
     */
    static void model(Path dir, MatVec.DType dtype, int context) {
        model(dir, dtype, context, 1);
    }

    /** The same with a batched engine of {@code sequences} sequences of {@code context} positions each. */
    static void model(Path dir, MatVec.DType dtype, int context, int sequences) {
        check(() -> modelFootprint(dir, dtype, context, sequences), INFER_FIX);
    }

    /**
     * Several model directories loaded at once, each with its engine ({@code bench infer} with
     * --model repeated): the sum of what {@link #model} checks for each.
     */
    static void models(List<Path> dirs, List<MatVec.DType> dtypes, int context, int sequences) {
        check(() -> {
            Footprint all = Footprint.NONE;
            for (int i = 0; i < dirs.size(); i++) all = all.plus(modelFootprint(dirs.get(i), dtypes.get(i), context, sequences));
            return all;
        }, "the " + dirs.size() + " models do not fit in memory together: time them one --model at a time");
    }

    /**
     * A model directory's weights (the mapped file and what the load makes) and its engine; nothing
     * when its files cannot be read (the load reads the same files and reports it).
     */
    private static Footprint modelFootprint(Path dir, MatVec.DType dtype, int context, int sequences) {
        ModelConfig c;
        Footprint weights;
        try {
            c = ModelFiles.readConfig(dir);
            Path file = dir.resolve(ModelFiles.MODEL);
            try (SafeTensors st = SafeTensors.open(file)) {
                var stored = st.tensors();
                weights = InferenceModel.footprint(c, dtype, name -> stored.containsKey(name) ? stored.get(name).dtype() : null)
                        .plus(Footprint.offHeap("the mapped model file", Files.size(file)));
            }
        } catch (IOException | IllegalArgumentException e) {
            return Footprint.NONE;
        }
        return weights.plus(engine(c, dtype, context, sequences));
    }

    /** A preset with random weights (bench infer): its parameter buffer, its weights, an engine. */
    static void randomModel(ModelConfig c, MatVec.DType dtype, int context) {
        randomModel(c, dtype, context, 1);
    }

    /** The same with a batched engine of {@code sequences} sequences of {@code context} positions each. */
    static void randomModel(ModelConfig c, MatVec.DType dtype, int context, int sequences) {
        check(() -> randomModelFootprint(c, dtype, context, sequences), INFER_FIX);
    }

    /**
     * Whether the random models of these configurations fit in memory all at once, each with an
     * engine of {@code sequences} sequences ({@code bench infer} then times them round by round):
     * their weights and engines together, and the fp32 parameter buffers they are built from
     * counted as if none were freed (the heap may hold them until a collection).
     */
    static boolean randomModelsFitTogether(List<ModelConfig> configs, MatVec.DType dtype, int context, int sequences) {
        try {
            Footprint f = Footprint.NONE;
            for (ModelConfig c : configs) f = f.plus(randomModelFootprint(c, dtype, context, sequences));
            check(f, INFER_FIX, Runtime.getRuntime().maxMemory(), physicalMemory());
            return true;
        } catch (Errors.UserError | ArithmeticException e) {
            return false;
        }
    }

    /** A random model's fp32 parameter buffer, its weights and an engine. */
    private static Footprint randomModelFootprint(ModelConfig c, MatVec.DType dtype, int context, int sequences) {
        long params = ParamLayout.of(c).totalSize();
        return Footprint.heap("parameters", Float.BYTES * params, params)
                .plus(InferenceModel.footprint(c, dtype, name -> SafeTensors.DType.F32))
                // the bench copies fp32 weights off the heap as well (InferenceBenchmarks.randomModel)
                .plus(Footprint.offHeap("fp32 weights copied off-heap", dtype == MatVec.DType.F32 ? Float.BYTES * params : 0))
                .plus(engine(c, dtype, context, sequences));
    }

    private static Footprint engine(ModelConfig c, MatVec.DType dtype, int context, int sequences) {
        int ctx = Math.clamp(context, 1, c.maxPositions());
        if (sequences <= 1) return Engine.footprint(c, dtype, ctx, Engine.DEFAULT_CHUNK);
        long blocks = (long) sequences * ((ctx + KvCache.DEFAULT_BLOCK - 1) / KvCache.DEFAULT_BLOCK + 1);
        return Engine.footprint(c, dtype, ctx, Math.max(sequences, Engine.DEFAULT_CHUNK), (int) Math.min(Integer.MAX_VALUE, blocks));
    }

    private static void check(Supplier<Footprint> plan, String fix) {
        Footprint f;
        try {
            f = plan.get();
        } catch (ArithmeticException e) {
            throw new Errors.UserError("the model's sizes are too large to count in 64 bits; use smaller sizes");
        }
        check(f, fix, Runtime.getRuntime().maxMemory(), physicalMemory());
    }

    /** Throws a {@link Errors.UserError} when {@code f} does not fit {@code heap} and {@code physical} bytes (0: unknown). */
    static void check(Footprint f, String fix, long heap, long physical) {
        if (f.longestArray() > ParamLayout.MAX_ARRAY_LENGTH) {
            throw new Errors.UserError("needs an array of " + String.format(Locale.ROOT, "%,d", f.longestArray())
                    + " elements, more than a Java array holds (" + String.format(Locale.ROOT, "%,d", ParamLayout.MAX_ARRAY_LENGTH)
                    + ") whatever the heap: lower --batch/--seq or the model's sizes");
        }
        long h = f.heapBytes();
        if (h > heap) {
            throw new Errors.UserError("needs " + Errors.gib(h) + " of heap (" + parts(f.largest(Footprint.Where.HEAP))
                    + "), the heap has " + Errors.gib(heap) + ": " + fix);
        }
        long n = f.nativeBytes();
        if (physical > 0 && n > physical - h) {
            throw new Errors.UserError("needs " + Errors.gib(n) + " of memory outside the heap ("
                    + parts(f.largest(Footprint.Where.NATIVE)) + ") besides " + Errors.gib(h) + " of heap arrays; the machine has "
                    + Errors.gib(physical) + ": use a smaller model, or a machine with more memory");
        }
    }

    /** Up to three largest parts of 1% or more, e.g. "activations 17.1 GiB, KV cache 2.0 GiB". */
    private static String parts(List<Footprint.Part> largest) {
        long total = largest.stream().mapToLong(Footprint.Part::bytes).reduce(0, Footprint::saturatedAdd);
        return largest.stream().filter(p -> p == largest.getFirst() || p.bytes() >= total / 100).limit(3)
                .map(p -> p.what() + " " + Errors.gib(p.bytes())).collect(Collectors.joining(", "));
    }

    /** The machine's (or container's) memory, 0 when the JVM does not say. */
    static long physicalMemory() {
        return ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os
                ? os.getTotalMemorySize() : 0;
    }
}
