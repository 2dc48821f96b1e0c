package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.TensorView;
import dev.dsmoe.model.Footprint;
import dev.dsmoe.model.HeapArrays;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The inference estimates ({@link Engine#footprint}, {@link InferenceModel#footprint}) against what is allocated. */
class EngineFootprintTest {

    @TempDir
    Path dir;

    /**
     * An engine that has prefilled, scored and decoded holds what its footprint says: exactly
     * with f32 weights (GEMM reads them in place) and with any weights when oneDNN runs the GEMM
     * products (its scratch is native, per thread); else with bf16 and q8_0 weights but for the
     * GEMM scratch they are unpacked into, which the estimate takes at its largest.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.dsmoe.infer.TinyModels#all")
    void engineEstimateIsWhatARunningEngineHolds(String name, ModelConfig c) {
        ParamLayout layout = ParamLayout.of(c);
        for (MatVec.DType dtype : MatVec.DType.values()) {
            try (InferenceModel m = InferenceModel.fromParams(layout, TinyModels.params(layout, 1), dtype)) {
                int context = 40, chunk = 16;
                Engine e = new Engine(m, ExpertSelection.defaultFor(c), context, chunk);
                int[] tokens = TinyModels.tokens(36, c.vocabSize(), 2);
                e.score(tokens);
                e.prefill(java.util.Arrays.copyOf(tokens, 20));
                e.decode(3);
                long real = HeapArrays.bytes(e, o -> o instanceof InferenceModel || o instanceof ModelConfig
                        || o instanceof ExpertSelection);
                Footprint f = Engine.footprint(c, dtype, context, chunk);
                String what = name + ", " + dtype + ": estimate " + f.heapBytes() + " vs real " + real;
                if (dtype == MatVec.DType.F32) assertEquals(0, InferenceModel.gemmScratchFloats(c, dtype), what);
                if (InferenceModel.gemmScratchFloats(c, dtype) == 0) { // fp32, or any format through oneDNN (native scratch)
                    assertEquals(real, f.heapBytes(), what);
                } else {
                    assertTrue(f.heapBytes() >= real, what);
                    assertTrue(f.heapBytes() - real < 4 * InferenceModel.gemmScratchFloats(c, dtype), what);
                }
                assertEquals(KvCache.bytes(c.numLayers(), c.nKv() * c.dAtt(), KvCache.DEFAULT_BLOCK,
                        (context + KvCache.DEFAULT_BLOCK - 1) / KvCache.DEFAULT_BLOCK), e.cache().bytes(), "the prompt filled every block");
                assertEquals(e.cache().bytes(), f.parts().stream().filter(p -> p.what().equals("KV cache")).findFirst().orElseThrow().bytes());
            }
        }
    }

    /** Loading converts exactly the weights whose stored type differs, into the off-heap bytes the estimate gives. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.dsmoe.infer.TinyModels#all")
    void modelEstimateIsWhatLoadingAllocates(String name, ModelConfig c) throws IOException {
        ParamLayout layout = ParamLayout.of(c);
        float[] params = TinyModels.params(layout, 1);
        long weights = 0, norms = 0;
        for (ParamLayout.Tensor t : layout.tensors()) {
            if (t.role() == ParamLayout.Role.NORM) norms += 4 * t.numel();
            else weights += t.numel();
        }
        for (SafeTensors.DType stored : new SafeTensors.DType[] {SafeTensors.DType.F32, SafeTensors.DType.BF16}) { // the writable types
            Path d = TinyModels.write(dir.resolve(stored.name()), c, params, stored);
            for (MatVec.DType dtype : MatVec.DType.values()) {
                Footprint f = InferenceModel.footprint(c, dtype, n -> stored);
                try (InferenceModel m = InferenceModel.load(d, dtype)) {
                    String what = name + ", " + stored + " file as " + dtype;
                    assertEquals(HeapArrays.bytes(m, o -> o instanceof ModelConfig), f.heapBytes(), what);
                    assertEquals(norms, f.heapBytes(), what);
                    long converted = convertedBytes(m);
                    assertEquals(converted + sideBySideBytes(m), f.nativeBytes(), what);
                    assertEquals(expectedSideBySide(c, dtype), sideBySideBytes(m), what + ": MoA output experts side by side");
                    boolean inPlace = stored.name().equals(dtype.name());
                    assertEquals(inPlace ? 0 : weightBytes(layout, dtype), converted, what);
                    if (dtype == MatVec.DType.Q8_0) { // 1 byte a weight and a 4-byte scale per 32 (per row's short last block)
                        long tensors = layout.tensors().size(); // each padded to 64 bytes at most, short blocks add scales
                        assertTrue(converted >= weights * 1.125 && converted <= weights * 1.25 + 64 * tensors,
                                what + ": " + converted + " bytes for " + weights + " weights");
                    } else if (!inPlace) {
                        assertEquals(weights * (long) dtype.bytesPerWeight, converted, what);
                    }
                }
            }
        }
    }

    /**
     * A quantized checkpoint is used where it lies: every weight a view of the mapped file (a
     * Q8_0 weight's quants and scales both), nothing converted, which the estimate says too.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dev.dsmoe.infer.TinyModels#all")
    void aQuantizedCheckpointIsMappedNotCopied(String name, ModelConfig c) throws IOException {
        ParamLayout layout = ParamLayout.of(c);
        Path src = TinyModels.write(dir.resolve("f32"), c, TinyModels.params(layout, 1), SafeTensors.DType.F32);
        for (MatVec.DType dtype : new MatVec.DType[] {MatVec.DType.Q8_0, MatVec.DType.BF16}) {
            Path q = InferenceModelFilesTest.quantize(src, dtype, dir.resolve(dtype.name()));
            java.util.Map<String, SafeTensors.DType> stored = new java.util.HashMap<>();
            try (SafeTensors st = SafeTensors.open(q.resolve(dev.dsmoe.io.ModelFiles.MODEL))) {
                st.tensors().forEach((n, i) -> stored.put(n, i.dtype()));
            }
            Footprint f = InferenceModel.footprint(c, dtype, stored::get);
            try (InferenceModel m = InferenceModel.load(q)) {
                assertEquals(sideBySideBytes(m), f.nativeBytes(), name + ", " + dtype);
                assertEquals(expectedSideBySide(c, dtype), sideBySideBytes(m), name + ", " + dtype);
                assertEquals(0, convertedBytes(m), name + ", " + dtype);
                assertEquals(HeapArrays.bytes(m, o -> o instanceof ModelConfig), f.heapBytes(), name + ", " + dtype);
                for (TensorView w : weights(m)) {
                    assertTrue(w.segment().isMapped(), w + " of " + name + ", " + dtype + " is a view of the mapped file");
                    if (dtype == MatVec.DType.Q8_0) {
                        assertTrue(((dev.dsmoe.kernels.Q8Tensor) w).scaleByteOffset() > w.byteOffset(), "its scales follow its quants");
                    }
                }
            }
        }
    }

    /** Bytes of every weight (not the norms) of the layout in {@code dtype}: its matrix, experts stacked along the rows. */
    private static long weightBytes(ParamLayout layout, MatVec.DType dtype) {
        long sum = 0;
        for (ParamLayout.Tensor t : layout.tensors()) {
            if (t.role() == ParamLayout.Role.NORM) continue;
            int[] s = t.shape();
            sum += s.length == 3 ? dtype.bytes((long) s[0] * s[1], s[2]) : dtype.bytes(s[0], s[1]);
        }
        return sum;
    }

    /**
     * What the MoA output experts side by side take: one {@code [d, N_att·w]} matrix a layer for
     * several attention experts, in any format that can (Q8_0: w a multiple of its block).
     */
    private static long expectedSideBySide(ModelConfig c, MatVec.DType dtype) {
        long w = (long) c.nHead() * c.dAtt();
        boolean kept = c.nAtt() > 1 && (dtype != MatVec.DType.Q8_0 || w % 32 == 0);
        return kept ? c.numLayers() * dtype.bytes(c.dEmb(), c.nAtt() * w) : 0;
    }

    /** Bytes of the segments behind the model's side-by-side MoA outputs (off-heap copies). */
    private static long sideBySideBytes(InferenceModel m) {
        long sum = 0;
        for (int l = 0; l < m.numLayers(); l++) {
            TensorView v = m.attentionOutputSideBySide(l);
            if (v == null) continue;
            assertTrue(v.segment().isNative() && !v.segment().isMapped(), "a copy off the heap");
            sum += v.segment().byteSize();
        }
        return sum;
    }

    /** Bytes of the distinct off-heap (not mapped) segments behind the model's weights. */
    private static long convertedBytes(InferenceModel m) {
        Set<MemorySegment> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        long sum = 0;
        for (TensorView w : weights(m)) {
            MemorySegment s = w.segment();
            if (s.isNative() && !s.isMapped() && seen.add(s)) sum += s.byteSize();
        }
        return sum;
    }

    /** Every weight matrix of the model (not the norms). */
    private static java.util.List<TensorView> weights(InferenceModel m) {
        java.util.List<TensorView> all = new java.util.ArrayList<>(java.util.List.of(m.embed(), m.output()));
        for (int l = 0; l < m.numLayers(); l++) {
            ParamLayout.Layer<TensorView> L = m.layer(l);
            all.addAll(java.util.List.of(L.qProj(), L.kProj(), L.vProj(), L.oProj(), L.upProj(), L.downProj()));
            for (var r : java.util.Arrays.asList(L.attnRouter(), L.mlpRouter())) {
                if (r == null) continue;
                all.add(r.out());
                if (r.hidden() != null) all.add(r.hidden());
            }
        }
        return all;
    }
}
