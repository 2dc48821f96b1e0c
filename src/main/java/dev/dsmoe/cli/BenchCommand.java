package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.bench.EndToEndBenchmarks;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ./dsmoe bench}: measured throughput, always compared in one run. */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Without a subcommand: the end-to-end report (machine limits; training tokens/s per family,",
                "with the PyTorch peer when python3-torch is installed; prefill/decode per expert selection; decode at",
                "the paper's 1B shapes in fp32, bf16 and q8_0), as Markdown. Subcommands measure one part in detail."},
        subcommands = {BenchKernelsCommand.class, BenchTrainCommand.class, BenchInferCommand.class, BenchServeCommand.class})
final class BenchCommand implements Callable<Integer> {

    @Option(names = "--quick", description = "Fewer repeats and shorter runs (a smoke test, not for the record).")
    boolean quick;

    @Option(names = "--no-1b", description = "Skip the 1B-shape decode (needs about 10 GB of memory and a few minutes).")
    boolean no1b;

    @Option(names = "--no-peer", description = "Skip the PyTorch peer.")
    boolean noPeer;

    @Option(names = "--peer-script", defaultValue = "bench/pytorch_peer.py", description = "The PyTorch peer. Default: ${DEFAULT-VALUE}.")
    Path peerScript;

    @Option(names = "--repeats", defaultValue = "5", description = "Timed repeats per figure (median). Default: ${DEFAULT-VALUE}.")
    int repeats;

    @Option(names = "--out", description = "Also write the report to this Markdown file (and FILE.json with every row).")
    Path out;

    @Override
    public Integer call() throws Exception {
        if (repeats < 1) throw new IllegalArgumentException("--repeats must be >= 1");
        EndToEndBenchmarks b = new EndToEndBenchmarks(new EndToEndBenchmarks.Options(quick, !no1b, !noPeer, peerScript,
                quick ? 1 : repeats), s -> Terminal.status(s));
        String report = b.run();
        Terminal.clearStatus();
        System.out.print(report);
        if (out != null) {
            dev.dsmoe.io.AtomicFiles.writeString(out, report);
            dev.dsmoe.io.AtomicFiles.writeString(out.resolveSibling(out.getFileName() + ".json"),
                    new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(b.rows()));
        }
        return 0;
    }
}
