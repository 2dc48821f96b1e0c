package dev.dsmoe.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import static picocli.CommandLine.ScopeType.INHERIT;

/** Entry point of {@code ./dsmoe}: one picocli subcommand per verb. */
@Command(name = "dsmoe",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        description = "Dense training, sparse inference of Mixture-of-Experts language models (DS-MoE) on the JVM.",
        subcommands = {QuickstartCommand.class, PrepareCommand.class, TokenizeCommand.class, TrainCommand.class, GenerateCommand.class,
                EvalCommand.class, BenchCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @CommandLine.Option(names = "--kernels", scope = INHERIT, paramLabel = "auto|blas|java",
            description = "GEMM backend: OpenBLAS (blas), pure Java Vector API (java), or auto (blas when it loads).")
    void kernels(String value) {
        try {
            dev.dsmoe.kernels.Kernels.select(dev.dsmoe.kernels.Kernels.parse(value));
        } catch (IllegalArgumentException | UnsupportedOperationException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--kernels: " + e.getMessage());
        }
    }

    @CommandLine.Option(names = "--threads", scope = INHERIT, paramLabel = "N",
            description = "Worker threads (default: the machine's cores, or DSMOE_THREADS).")
    void threads(int n) {
        if (n < 1) throw new CommandLine.ParameterException(spec.commandLine(), "--threads must be >= 1, got " + n);
        dev.dsmoe.kernels.Parallel.setThreads(n);
    }

    @CommandLine.Option(names = "--verbose", scope = INHERIT,
            description = "Print stack traces on errors.")
    boolean verbose;

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the CLI and returns its exit status (tests call this instead of {@link #main}). */
    public static int run(String... args) {
        return commandLine().execute(args);
    }

    /** Every verb, with the error contract of {@link Errors} (tests add verbs of their own to it). */
    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        cl.setOverwrittenOptionsAllowed(true); // a later --key value wins, so scripts can append overrides
        TrainCommand.addConfigOptions(cl.getSubcommands().get("train").getCommandSpec());
        cl.setExecutionStrategy(new Errors.CatchErrors());
        cl.setExecutionExceptionHandler(new Errors.Handler());
        cl.setParameterExceptionHandler(new Errors.ParameterHandler());
        return cl;
    }

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"dsmoe4j " + (v == null ? "(development build)" : v)
                    + " on Java " + Runtime.version()};
        }
    }
}
