package dev.dsmoe.cli;

import dev.dsmoe.kernels.Kernels;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import static picocli.CommandLine.ScopeType.INHERIT;

/** Entry point of {@code ./dsmoe}: one picocli subcommand per verb. */
@Command(name = "dsmoe",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        description = "Dense training, sparse inference of Mixture-of-Experts language models (DS-MoE) on the JVM.",
        subcommands = {QuickstartCommand.class, PrepareCommand.class, TokenizeCommand.class, TrainCommand.class, GenerateCommand.class, ServeCommand.class,
                EvalCommand.class, QuantizeCommand.class, BenchCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @CommandLine.Option(names = "--verbose", scope = INHERIT,
            description = "Print stack traces on errors.")
    boolean verbose;

    @CommandLine.Mixin
    ComputeOptions compute;

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the CLI and returns its exit status (tests call this instead of {@link #main}). */
    public static int run(String... args) {
        return commandLine().execute(args);
    }

    /** Every verb, with the error contract of {@link Errors} (tests add verbs of their own to it). */
    static CommandLine commandLine() {
        Kernels.chooseAutoWith(ComputeOptions::measuredChoice);
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
