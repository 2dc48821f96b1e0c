package dev.dsmoe.cli;

import java.util.Locale;
import picocli.CommandLine;

/**
 * Turns failures into the project's error contract: one line on stderr, and a stack trace only
 * with {@code --verbose} (or DSMOE_VERBOSE=1). Bad input, and a run that does not fit in memory,
 * end with exit status 2 and a line naming the thing and the fix; anything else is a bug in
 * dsmoe, exit status 1, and its line says so.
 */
final class Errors {

    /** Exit status for a bug: an exception no check anticipated. */
    static final int INTERNAL = 1;
    /** Exit status for bad input or an environment problem (too little memory included). */
    static final int BAD_INPUT = 2;

    private Errors() {}

    /** A failure whose message is already the one line the user should see. */
    static final class UserError extends RuntimeException {
        UserError(String message) {
            super(message);
        }
    }

    /**
     * The data-parallel job a command runs in (null: none, or one process). On an error there,
     * a {@link dev.dsmoe.dist.CollectiveFailure} (every rank found it together) is reported by rank
     * 0 alone and every rank leaves the job normally; any other error is this rank's alone: its line
     * names the rank and {@code MPI_Abort} ends the whole job, so no other rank waits forever.
     */
    static volatile dev.dsmoe.dist.Dist job;

    static boolean verbose() {
        return "1".equals(System.getenv("DSMOE_VERBOSE"));
    }

    /**
     * Runs a command and rethrows an {@link Error} as picocli's ExecutionException: picocli
     * hands only Exceptions to the handler and lets an Error (OutOfMemoryError) escape as a JVM
     * stack trace with status 1.
     */
    static final class CatchErrors implements CommandLine.IExecutionStrategy {
        private final CommandLine.IExecutionStrategy inner = new CommandLine.RunLast();

        @Override
        public int execute(CommandLine.ParseResult parsed) {
            try {
                return inner.execute(parsed);
            } catch (Error e) {
                CommandLine.ParseResult last = parsed;
                while (last.subcommand() != null) last = last.subcommand();
                throw new CommandLine.ExecutionException(last.commandSpec().commandLine(), String.valueOf(e), e);
            }
        }
    }

    static final class Handler implements CommandLine.IExecutionExceptionHandler {
        @Override
        public int handleExecutionException(Exception ex, CommandLine cl, CommandLine.ParseResult parsed) {
            Throwable t = ex instanceof CommandLine.ExecutionException && ex.getCause() instanceof Error e ? e : ex;
            boolean verbose = verbose() || parsed.hasMatchedOption("--verbose")
                    || parsed.subcommands().stream().anyMatch(p -> p.hasMatchedOption("--verbose"));
            dev.dsmoe.dist.Dist job = Errors.job;
            String verb = "dsmoe " + cl.getCommandName() + (job != null && !job.isRoot() ? " (rank " + job.rank() + ")" : "");
            boolean collective = job != null && t instanceof dev.dsmoe.dist.CollectiveFailure;
            if (collective && !job.isRoot()) {
                job.close();
                return BAD_INPUT;
            }
            int status;
            if (t instanceof UserError || t instanceof IllegalArgumentException
                    || t instanceof java.io.IOException || t instanceof java.io.UncheckedIOException) {
                cl.getErr().println(verb + ": " + (t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage()));
                status = BAD_INPUT;
            } else if (t instanceof OutOfMemoryError) {
                // The run asked for more than this JVM has: a setting to change, not a bug.
                cl.getErr().println(verb + ": ran out of memory (" + t.getMessage() + "; the heap is "
                        + gib(Runtime.getRuntime().maxMemory()) + "): lower --batch/--seq or use a smaller model, "
                        + "or raise DSMOE_HEAP (e.g. DSMOE_HEAP=16g)");
                status = BAD_INPUT;
            } else {
                cl.getErr().println(verb + ": internal error (a bug, please report it): " + t.getClass().getSimpleName()
                        + (t.getMessage() == null ? "" : ": " + t.getMessage())
                        + (verbose ? "" : "; rerun with --verbose for the stack trace"));
                status = INTERNAL;
            }
            if (verbose) t.printStackTrace(cl.getErr());
            cl.getErr().flush();
            if (collective) {
                job.close();
            } else if (job != null) {
                job.abort(status);
            }
            return status;
        }
    }

    /** Bytes as GiB with one decimal, the unit DSMOE_HEAP is usually given in. */
    static String gib(long bytes) {
        return String.format(Locale.ROOT, "%.1f GiB", bytes / (double) (1L << 30));
    }

    static final class ParameterHandler implements CommandLine.IParameterExceptionHandler {
        @Override
        public int handleParseException(CommandLine.ParameterException ex, String[] args) {
            CommandLine cl = ex.getCommandLine();
            cl.getErr().println("dsmoe: " + ex.getMessage() + " (see 'dsmoe "
                    + (cl.getCommandName().equals("dsmoe") ? "" : cl.getCommandName() + " ") + "--help')");
            cl.getErr().flush();
            return BAD_INPUT;
        }
    }
}
