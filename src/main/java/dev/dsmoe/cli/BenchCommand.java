package dev.dsmoe.cli;

import picocli.CommandLine.Command;

/** {@code ./dsmoe bench}: measured throughput, always compared in one run. */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Benchmarks: 'kernels' (GEMM both backends, memory bandwidth, mat-vec), 'train' (training tokens/s per family), 'infer' (prefill/decode tokens/s per expert selection).",
        subcommands = {BenchKernelsCommand.class, BenchTrainCommand.class, BenchInferCommand.class})
final class BenchCommand implements Runnable {
    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
