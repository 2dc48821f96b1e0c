package dev.dsmoe.cli;

import picocli.CommandLine;

/**
 * Turns failures into the project's error contract: one clear line on stderr naming the thing
 * and the fix, exit status 2, and a stack trace only with {@code --verbose} (or DSMOE_VERBOSE=1).
 */
final class Errors {

    /** Exit status for bad input or an environment problem. */
    static final int BAD_INPUT = 2;

    private Errors() {}

    /** A failure whose message is already the one line the user should see. */
    static final class UserError extends RuntimeException {
        UserError(String message) {
            super(message);
        }
    }

    static boolean verbose() {
        return "1".equals(System.getenv("DSMOE_VERBOSE"));
    }

    static final class Handler implements CommandLine.IExecutionExceptionHandler {
        @Override
        public int handleExecutionException(Exception ex, CommandLine cl, CommandLine.ParseResult parsed) {
            boolean verbose = verbose() || parsed.hasMatchedOption("--verbose")
                    || parsed.subcommands().stream().anyMatch(p -> p.hasMatchedOption("--verbose"));
            String msg = ex.getMessage() == null ? ex.getClass().getSimpleName() : ex.getMessage();
            if (ex instanceof UserError || ex instanceof IllegalArgumentException
                    || ex instanceof java.io.IOException || ex instanceof java.io.UncheckedIOException) {
                cl.getErr().println("dsmoe " + cl.getCommandName() + ": " + msg);
            } else {
                cl.getErr().println("dsmoe " + cl.getCommandName() + ": internal error: " + msg
                        + (verbose ? "" : " (run with --verbose for the stack trace)"));
            }
            if (verbose) ex.printStackTrace(cl.getErr());
            cl.getErr().flush();
            return BAD_INPUT;
        }
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
