package dev.dsmoe.infer;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Matmul;
import dev.dsmoe.kernels.Q8Tensor;
import dev.dsmoe.kernels.TensorView;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Sparse inference never reads an unselected expert: with the weights of the experts a step did
 * not select set to NaN (attention experts' q/o projections, MLP experts' up/down projections),
 * the logits stay finite and bit-identical to the run with the real weights. Any read of such an
 * expert shows, even one scaled by a zero gate (NaN · 0 = NaN). Checked per step (each prefill
 * chunk, each decoded token) on in-memory weights, and with the experts no step selected NaN in
 * the checkpoint file (the memory-mapped fp32 and bf16 paths).
 */
class UnselectedExpertsTest {

    @TempDir
    Path dir;

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final short BF16_NAN = 0x7fc0;

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (ModelConfig c : new ModelConfig[] {TinyModels.dsmoe(), TinyModels.dsmoeMlpRouter()}) {
            for (String s : new String[] {"top-k:att=1,mlp=2", "threshold:att=1.2,mlp=1.2", "threshold-top-k:att=1.5,mlp=1.5"}) {
                out.add(Arguments.of(c.nAtt() + "x" + c.nFfd() + " " + c.router() + " router, " + s, c, s));
            }
        }
        out.add(Arguments.of("smoe default top-2", TinyModels.smoe(), "default"));
        return out.stream();
    }

    /** The steps of a run: prefill of the prompt in chunks (one step each), then decoded tokens. */
    private record Script(int[] prompt, int chunk, int[] decoded) {
        int steps() {
            return (prompt.length + chunk - 1) / chunk + decoded.length;
        }
    }

    /** Which experts each step selected: {@code [step][layer][0 attention, 1 MLP][expert]}. */
    private static final class Recorder implements Engine.RouteObserver {
        final List<boolean[][][]> steps = new ArrayList<>();
        /** Steps where some expert had more rows than the mat-vec takes (its product ran as a GEMM). */
        final List<Boolean> gemm = new ArrayList<>();
        private final ModelConfig c;

        Recorder(ModelConfig c) {
            this.c = c;
        }

        void nextStep() {
            boolean[][][] s = new boolean[c.numLayers()][2][];
            for (boolean[][] l : s) {
                l[0] = new boolean[c.nAtt()];
                l[1] = new boolean[c.nFfd()];
            }
            steps.add(s);
            gemm.add(false);
        }

        @Override
        public void routed(int layer, boolean attention, int[] chosen, int m, int width) {
            boolean[] used = steps.getLast()[layer][attention ? 0 : 1];
            int[] rows = new int[used.length];
            for (int s = 0; s < m * width; s++) {
                if (chosen[s] < 0) continue;
                used[chosen[s]] = true;
                if (++rows[chosen[s]] > Matmul.MATVEC_MAX_ROWS) gemm.set(gemm.size() - 1, true);
            }
        }

        /** The experts no step selected. */
        boolean[][][] neverSelected() {
            boolean[][][] u = new boolean[c.numLayers()][2][];
            for (int l = 0; l < u.length; l++) {
                for (int k = 0; k < 2; k++) {
                    u[l][k] = new boolean[k == 0 ? c.nAtt() : c.nFfd()];
                    for (int e = 0; e < u[l][k].length; e++) {
                        boolean any = false;
                        for (boolean[][][] s : steps) any |= s[l][k][e];
                        u[l][k][e] = !any;
                    }
                }
            }
            return u;
        }
    }

    private interface StepHook {
        void at(int step);
    }

    /** Runs the script; returns each step's logits; {@code before}/{@code after} bracket every step. */
    private static float[][] run(Engine e, Script s, StepHook before, StepHook after) {
        float[][] logits = new float[s.steps()][];
        int step = 0;
        for (int p = 0; p < s.prompt().length; p += s.chunk(), step++) {
            int[] part = Arrays.copyOfRange(s.prompt(), p, Math.min(s.prompt().length, p + s.chunk()));
            before.at(step);
            logits[step] = (p == 0 ? e.prefill(part) : e.append(part)).clone();
            after.at(step);
        }
        for (int t : s.decoded()) {
            before.at(step);
            logits[step] = e.decode(t).clone();
            after.at(step);
            step++;
        }
        return logits;
    }

    private static void assertSameFiniteLogits(String what, float[][] expected, float[][] actual) {
        for (int s = 0; s < expected.length; s++) {
            for (int i = 0; i < expected[s].length; i++) {
                if (!Float.isFinite(actual[s][i])) fail(what + ": step " + s + " logit " + i + " is " + actual[s][i]);
                if (Float.floatToRawIntBits(expected[s][i]) != Float.floatToRawIntBits(actual[s][i])) {
                    fail(what + ": step " + s + " logit " + i + " is " + actual[s][i] + ", with the real weights "
                            + expected[s][i]);
                }
            }
        }
    }

    /** Expert {@code e}'s weight matrices: q and o projections (attention, k = 0) or up and down (MLP). */
    private static TensorView[] expertWeights(InferenceModel m, int layer, int k) {
        ParamLayout.Layer<TensorView> w = m.layer(layer);
        return k == 0 ? new TensorView[] {w.qProj(), w.oProj()} : new TensorView[] {w.upProj(), w.downProj()};
    }

    /** Fills expert {@code e}'s matrix of {@code w} with NaN; returns its bytes for {@link #restore}. */
    /** Sets expert e's weights to NaN (a Q8 expert's scales); returns the undo. */
    private static Runnable poison(TensorView w, int e) {
        TensorView x = w.expert(e);
        MemorySegment s = x instanceof Q8Tensor q
                ? x.segment().asSlice(q.scaleByteOffset(), (long) x.rows() * q.blocksPerRow() * 4)
                : x.segment().asSlice(x.byteOffset(), (long) x.rows() * x.cols() * x.elementBytes());
        byte[] saved = s.toArray(ValueLayout.JAVA_BYTE);
        if (x.elementBytes() == 4 || x instanceof Q8Tensor) {
            for (long i = 0; i < s.byteSize() / 4; i++) s.setAtIndex(F32, i, Float.NaN);
        } else {
            for (long i = 0; i < s.byteSize() / 2; i++) s.setAtIndex(I16, i, BF16_NAN);
        }
        return () -> MemorySegment.copy(saved, 0, s, ValueLayout.JAVA_BYTE, 0, saved.length);
    }

    /** How many experts {@code [attention, MLP]} are marked. */
    private static int[] countUnselected(boolean[][][] unselected) {
        int[] n = new int[2];
        for (boolean[][] l : unselected) {
            for (int k = 0; k < 2; k++) {
                for (boolean u : l[k]) if (u) n[k]++;
            }
        }
        return n;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void perStepUnselectedExpertsAreNeverRead(String name, ModelConfig c, String selection) {
        ExpertSelection sel = ExpertSelection.parse(selection, c);
        ParamLayout layout = ParamLayout.of(c);
        float[] p = TinyModels.params(layout, 21);
        // chunks of 3 run every expert through the mat-vec; chunks of 20 give experts > 8 rows
        // (GEMM), and a first chunk of one token repeated routes all its rows alike, so that
        // some experts are left out next to a GEMM; then decode
        for (int chunk : new int[] {3, 20}) {
            int[] prompt = TinyModels.tokens(chunk == 3 ? 9 : 40, c.vocabSize(), 22);
            if (chunk == 20) Arrays.fill(prompt, 0, chunk, prompt[0]);
            Script script = new Script(prompt, chunk, TinyModels.tokens(6, c.vocabSize(), 23));
            for (MatVec.DType dtype : MatVec.DType.values()) {
                String what = name + ", " + dtype + ", chunks of " + chunk;
                try (InferenceModel m = InferenceModel.fromParams(layout, p.clone(), dtype)) {
                    Engine e = new Engine(m, sel, c.maxPositions(), chunk);
                    Recorder real = new Recorder(c);
                    e.routeObserver = real;
                    float[][] expected = run(e, script, s -> real.nextStep(), s -> { });

                    Recorder again = new Recorder(c);
                    e.routeObserver = again;
                    int[] poisoned = new int[2];
                    boolean[] gemmWithNan = new boolean[1];
                    List<Runnable> undo = new ArrayList<>();
                    float[][] actual = run(e, script, s -> {
                        again.nextStep();
                        boolean[][][] used = real.steps.get(s);
                        for (int l = 0; l < c.numLayers(); l++) {
                            for (int k = 0; k < 2; k++) {
                                for (int x = 0; x < used[l][k].length; x++) {
                                    if (used[l][k][x]) continue;
                                    poisoned[k]++;
                                    gemmWithNan[0] |= real.gemm.get(s);
                                    for (TensorView w : expertWeights(m, l, k)) {
                                        int ex = x;
                                        undo.add(poison(w, ex));
                                    }
                                }
                            }
                        }
                    }, s -> {
                        undo.forEach(Runnable::run);
                        undo.clear();
                    });
                    assertSameFiniteLogits(what, expected, actual);
                    for (int s = 0; s < script.steps(); s++) {
                        for (int l = 0; l < c.numLayers(); l++) {
                            for (int k = 0; k < 2; k++) {
                                assertTrue(Arrays.equals(real.steps.get(s)[l][k], again.steps.get(s)[l][k]),
                                        what + ": the selection changed at step " + s);
                            }
                        }
                    }
                    // the check means something only if experts were left out
                    if (c.nAtt() > 1) assertTrue(poisoned[0] > 0, what + ": every attention expert was selected");
                    assertTrue(poisoned[1] > 0, what + ": every MLP expert was selected");
                    if (chunk > Matmul.MATVEC_MAX_ROWS) {
                        assertTrue(gemmWithNan[0], what + ": no step ran a GEMM next to a NaN expert");
                    }
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void expertsNoStepSelectedAreNeverReadFromTheCheckpoint(String name, ModelConfig c, String selection)
            throws IOException {
        ExpertSelection sel = ExpertSelection.parse(selection, c);
        ParamLayout layout = ParamLayout.of(c);
        float[] p = TinyModels.params(layout, 24);
        // short, so that some experts are never selected in the whole run
        Script script = new Script(TinyModels.tokens(2, c.vocabSize(), 25), 2, TinyModels.tokens(2, c.vocabSize(), 26));
        for (MatVec.DType dtype : MatVec.DType.values()) {
            String what = name + ", " + dtype + " checkpoint";
            SafeTensors.DType fileType = dtype == MatVec.DType.F32 ? SafeTensors.DType.F32 : SafeTensors.DType.BF16;
            Recorder real = new Recorder(c);
            float[][] expected;
            try (InferenceModel m = InferenceModel.load(TinyModels.write(dir.resolve(dtype + "-real"), c, p, fileType), dtype)) {
                Engine e = new Engine(m, sel, c.maxPositions(), script.chunk());
                e.routeObserver = real;
                expected = run(e, script, s -> real.nextStep(), s -> { });
            }
            boolean[][][] never = real.neverSelected();
            float[] nan = p.clone();
            for (int l = 0; l < c.numLayers(); l++) {
                ParamLayout.Layer<ParamLayout.Tensor> pl = layout.byRole().layer(l);
                for (int k = 0; k < 2; k++) {
                    for (int x = 0; x < never[l][k].length; x++) {
                        if (!never[l][k][x]) continue;
                        for (ParamLayout.Tensor t : k == 0 ? List.of(pl.qProj(), pl.oProj()) : List.of(pl.upProj(), pl.downProj())) {
                            long per = t.numel() / never[l][k].length;
                            Arrays.fill(nan, Math.toIntExact(t.offset() + x * per), Math.toIntExact(t.offset() + (x + 1) * per),
                                    Float.NaN);
                        }
                    }
                }
            }
            int[] n = countUnselected(never);
            if (c.nAtt() > 1) assertTrue(n[0] > 0, what + ": every attention expert was selected");
            assertTrue(n[1] > 0, what + ": every MLP expert was selected");
            try (InferenceModel m = InferenceModel.load(TinyModels.write(dir.resolve(dtype + "-nan"), c, nan, fileType), dtype)) {
                // the NaNs made it through the file (bf16 rounding keeps NaN)
                boolean anyNan = false;
                for (int l = 0; l < c.numLayers(); l++) {
                    for (int x = 0; x < never[l][1].length; x++) {
                        if (!never[l][1][x]) continue;
                        float[] row = new float[c.dEmb()];
                        m.layer(l).upProj().expert(x).copyRow(0, row, 0);
                        anyNan |= Float.isNaN(row[0]);
                    }
                }
                assertTrue(anyNan, what + ": no NaN weight in the loaded model");
                Engine e = new Engine(m, sel, c.maxPositions(), script.chunk());
                float[][] actual = run(e, script, s -> { }, s -> { });
                assertSameFiniteLogits(what, expected, actual);
            }
        }
    }
}
