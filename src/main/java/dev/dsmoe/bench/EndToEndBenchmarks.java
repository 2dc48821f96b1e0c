package dev.dsmoe.bench;

import com.fasterxml.jackson.databind.JsonNode;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.kernels.BlasGemm;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.kernels.Parallel;
import dev.dsmoe.model.Init;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.Transformer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * {@code ./dsmoe bench}: the project's headline throughput figures in one run, each beside the
 * machine's limit and as a ratio to the Dense model measured in the same run: training tokens/s
 * per family, prefill and decode tokens/s per expert selection on the small presets, decode at
 * the paper's 1B shapes (random weights, fp32, bf16 and q8_0), and the PyTorch peer side by side.
 */
public final class EndToEndBenchmarks {

    /** What to run. */
    public record Options(boolean quick, boolean oneB, boolean peer, Path peerScript, int repeats) {}

    private final Options o;
    private final Consumer<String> progress;
    private final StringBuilder md = new StringBuilder();
    private final List<Object> rows = new ArrayList<>();

    public EndToEndBenchmarks(Options o, Consumer<String> progress) {
        this.o = o;
        this.progress = progress;
    }

    /** Every row measured, for --json. */
    public List<Object> rows() {
        return rows;
    }

    private void p(String fmt, Object... args) {
        md.append(String.format(Locale.ROOT, fmt, args)).append('\n');
    }

    /** Runs everything and returns the Markdown report. */
    public String run() throws IOException {
        p("# dsmoe4j end-to-end benchmark (%s)", LocalDate.now());
        p("");
        p("Machine: %d threads, Java %s, %s. Medians over %d repeats.", Parallel.threads(), Runtime.version(),
                System.getenv("OPENBLAS_CORETYPE") == null ? "OPENBLAS_CORETYPE unset"
                        : "OPENBLAS_CORETYPE=" + System.getenv("OPENBLAS_CORETYPE"), o.repeats());
        p("");
        KernelBenchmarks k = new KernelBenchmarks(5, Math.max(5, o.repeats()), o.quick(), progress);
        KernelBenchmarks.Row fma = k.fmaPeak();
        KernelBenchmarks.Row read = k.memoryRead();
        KernelBenchmarks.Row blas = k.gemm(BlasGemm.load(), new KernelBenchmarks.GemmShape("A*B", 2048, 256, 1024), Double.NaN);
        rows.add(fma);
        rows.add(read);
        rows.add(blas);
        double readGBs = read.value(), blasGF = blas.value();
        p("## Machine limits");
        p("");
        p("| limit | measured |");
        p("|---|---:|");
        p("| FMA peak, Vector API, all threads | %.0f GFLOP/s |", fma.value());
        p("| OpenBLAS sgemm 2048x256x1024 | %.0f GFLOP/s |", blasGF);
        p("| memory read, all threads | %.1f GB/s |", readGBs);
        p("");

        training(blasGF);
        inferenceSmall(readGBs);
        if (o.oneB()) inference1b(readGBs);
        return md.toString();
    }

    private void training(double blasGF) throws IOException {
        List<String> presets = List.of("dense-small", "smoe-small", "dsmoe-small");
        int steps = o.quick() ? 2 : Math.max(3, o.repeats());
        List<TrainingBenchmarks.Row> t = new TrainingBenchmarks(8, 256, 2, steps, s -> progress.accept("train " + s)).run(presets);
        rows.addAll(t);
        PyTorchPeer peer = o.peer() ? new PyTorchPeer(o.peerScript()) : null;
        List<JsonNode> peerRows = new ArrayList<>();
        if (peer != null && peer.available()) {
            for (String preset : presets) {
                progress.accept("pytorch peer " + preset);
                Path cfg = Files.createTempFile("dsmoe-" + preset, ".json");
                Files.writeString(cfg, ConfigJson.toJson(ModelPresets.get(preset)));
                peerRows.add(peer.run(List.of("speed", "--config", cfg.toString(), "--batch", "8", "--seq", "256",
                        "--threads", Integer.toString(Parallel.threads()), "--steps", Integer.toString(steps), "--warmup", "2"), 1800));
                Files.deleteIfExists(cfg);
            }
            rows.addAll(peerRows);
        }
        p("## Training (forward + backward + AdamW), batch 8 x 256 tokens");
        p("");
        p("| preset | tokens/s | vs Dense | GFLOP/s (6N + attention) | %% of OpenBLAS sgemm | activations MiB |%s",
                peerRows.isEmpty() ? "" : " PyTorch tokens/s | dsmoe4j / PyTorch |");
        p("|---|---:|---:|---:|---:|---:|%s", peerRows.isEmpty() ? "" : "---:|---:|");
        for (int i = 0; i < t.size(); i++) {
            TrainingBenchmarks.Row r = t.get(i);
            String peerCols = "";
            if (!peerRows.isEmpty()) {
                double pt = peerRows.get(i).path("tokens_per_s").asDouble();
                peerCols = String.format(Locale.ROOT, " %.0f | %.2f |", pt, r.tokensPerSecond() / pt);
            }
            p("| %s | %.0f | %.2f | %.1f | %.0f%% | %d |%s", r.preset(), r.tokensPerSecond(), r.ratioToFirst(), r.gflops(),
                    100 * r.gflops() / blasGF, r.arenaBytes() >> 20, peerCols);
        }
        if (peer != null && !peer.available()) p("%nPyTorch peer skipped: %s.", peer.unavailableReason());
        if (!peerRows.isEmpty()) {
            p("");
            p("PyTorch peer: %s, BLAS %s.", peerRows.get(0).path("torch").asText(), peerRows.get(0).path("blas").asText());
            lossCheck(peer);
        }
        p("");
    }

    /** Our loss and the peer's on the same random-init weights and tokens. */
    private void lossCheck(PyTorchPeer peer) throws IOException {
        p("");
        p("| preset | dsmoe4j loss (fp32) | PyTorch loss (fp64) | relative difference |");
        p("|---|---:|---:|---:|");
        for (String preset : List.of("dense-small", "smoe-small", "dsmoe-small")) {
            progress.accept("loss check " + preset);
            ModelConfig c = ModelPresets.get(preset);
            ParamLayout layout = ParamLayout.of(c);
            float[] params = layout.newBuffer();
            Init.initialize(layout, params, 7);
            int b = 2, t = 64;
            SplittableRandom r = new SplittableRandom(3);
            int[] in = new int[b * t], tgt = new int[b * t];
            for (int i = 0; i < in.length; i++) in[i] = r.nextInt(c.vocabSize());
            for (int i = 0; i < in.length; i++) tgt[i] = i % t == t - 1 ? -1 : in[i + 1];
            double ours = new Transformer(layout, params, layout.newBuffer()).forward(in, tgt, b, t).total();
            JsonNode j = peer.loss(layout, params, in, tgt, b);
            double theirs = j.path("loss_total").asDouble();
            rows.add(j);
            p("| %s | %.6f | %.6f | %.1e |", preset, ours, theirs, Math.abs(ours - theirs) / Math.abs(theirs));
        }
    }

    private void inferenceSmall(double readGBs) {
        int prompt = 128, decode = o.quick() ? 16 : 64;
        InferenceBenchmarks ib = new InferenceBenchmarks(prompt, decode, 2, o.repeats(), s -> progress.accept("infer " + s));
        List<InferenceBenchmarks.Row> all = new ArrayList<>();
        try (InferenceModel warm = InferenceBenchmarks.randomModel("dsmoe-small", MatVec.DType.F32)) { // JIT warm-up, untimed
            new InferenceBenchmarks(prompt, decode, 3, 1, s -> progress.accept("JIT warm-up " + s))
                    .run("warm-up", warm, List.of("dense", "top-k:att=2,mlp=4"));
        }
        String[][] cases = {{"dense-small", "dense"}, {"smoe-small", "default"},
                {"dsmoe-small", "dense;top-k:4;top-k:att=2,mlp=4;top-k:att=1,mlp=2"}};
        for (String[] cs : cases) {
            try (InferenceModel m = InferenceBenchmarks.randomModel(cs[0], MatVec.DType.F32)) {
                all.addAll(ib.run(cs[0], m, List.of(cs[1].split(";"))));
            }
        }
        rows.addAll(all);
        InferenceBenchmarks.Row dense = all.getFirst();
        p("## Inference on the small presets (random weights, fp32, prompt %d, decode %d, one stream)", prompt, decode);
        p("");
        p("| model | selection | active hidden | prefill tok/s | vs Dense | decode tok/s | vs Dense | MB read/token | decode GB/s | %% of memory read |");
        p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (InferenceBenchmarks.Row r : all) {
            p("| %s | %s | %.0f%% | %.0f | %.2f | %.0f | %.2f | %.1f | %.1f | %.0f%% |", r.model(), r.selection(),
                    r.activeHiddenPercent(), r.prefillTokensPerSecond(), r.prefillTokensPerSecond() / dense.prefillTokensPerSecond(),
                    r.decodeTokensPerSecond(), r.decodeTokensPerSecond() / dense.decodeTokensPerSecond(),
                    r.weightBytesPerToken() / 1e6, r.decodeGBPerSecond(), 100 * r.decodeGBPerSecond() / readGBs);
        }
        p("");
    }

    private void inference1b(double readGBs) {
        int prompt = 16, decode = o.quick() ? 4 : 16;
        InferenceBenchmarks ib = new InferenceBenchmarks(prompt, decode, 1, o.repeats(), s -> progress.accept("infer 1b " + s));
        List<InferenceBenchmarks.Row> all = new ArrayList<>();
        // The paper's speed setting: MoA dense, top-K on the MLP. DS-MoE-1B's 439M active parameters
        // (METHOD section 6) correspond to 9 of its 32 MLP experts.
        String[][] cases = {{"dense-1b", "dense"}, {"smoe-1b", "default"}, {"dsmoe-1b", "dense;top-k:9"}};
        for (MatVec.DType dt : MatVec.DType.values()) {
            for (String[] cs : cases) {
                progress.accept("init " + cs[0] + " " + dt);
                try (InferenceModel m = InferenceBenchmarks.randomModel(cs[0], dt)) {
                    all.addAll(ib.run(cs[0], m, List.of(cs[1].split(";"))));
                }
                System.gc();
            }
        }
        rows.addAll(all);
        p("## Decode at the paper's 1B shapes (random weights, prompt %d, decode %d, one stream)", prompt, decode);
        p("");
        p("| model | weights | selection | active params/token | decode tok/s | vs Dense | GB/s of weights read | %% of memory read |");
        p("|---|---|---|---:|---:|---:|---:|---:|");
        for (InferenceBenchmarks.Row r : all) {
            InferenceBenchmarks.Row dense = all.stream().filter(x -> x.model().equals("dense-1b") && x.dtype().equals(r.dtype()))
                    .findFirst().orElse(r);
            p("| %s | %s | %s | %.0fM | %.2f | %.2f | %.1f | %.0f%% |", r.model(), r.dtype(), r.selection(),
                    r.activeParamsPerToken() / 1e6, r.decodeTokensPerSecond(), r.decodeTokensPerSecond() / dense.decodeTokensPerSecond(),
                    r.decodeGBPerSecond(), 100 * r.decodeGBPerSecond() / readGBs);
        }
        p("");
    }
}
