package dev.dsmoe.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code ./dsmoe bench kernels}. */
@Command(name = "kernels", mixinStandardHelpOptions = true,
        description = "GEMM GFLOP/s on training shapes for both backends, memory read GB/s and mat-vec GB/s.")
final class BenchKernelsCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        System.out.println("not yet");
        return 0;
    }
}
