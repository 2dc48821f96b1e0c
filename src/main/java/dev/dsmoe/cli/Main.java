package dev.dsmoe.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of {@code ./dsmoe}: one picocli subcommand per verb. */
@Command(name = "dsmoe",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        description = "Dense training, sparse inference of Mixture-of-Experts language models (DS-MoE) on the JVM.",
        subcommands = {QuickstartCommand.class, BenchCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the CLI and returns its exit status (tests call this instead of {@link #main}). */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler(new Errors.Handler());
        cl.setParameterExceptionHandler(new Errors.ParameterHandler());
        return cl.execute(args);
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
