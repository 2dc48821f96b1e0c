package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * Exit statuses through the real command line ({@link Main#commandLine}) with a verb that fails
 * on purpose: 2 for bad input and for running out of memory, 1 (and "a bug") for anything else.
 */
class ExitStatusTest {

    @Command(name = "fail")
    static final class Fail implements Callable<Integer> {
        @CommandLine.Parameters(index = "0") String how;

        @Override
        public Integer call() {
            switch (how) {
                case "npe" -> {
                    Object o = null;
                    return o.hashCode();
                }
                case "state" -> throw new IllegalStateException("the cache is in a state it should never be in");
                case "index" -> {
                    int[] a = new int[2];
                    return a[how.length()];
                }
                case "bad-input" -> throw new IllegalArgumentException("--thing 7: must be even");
                case "oom" -> {
                    long[][] hog = new long[1][];
                    hog[0] = new long[Integer.MAX_VALUE - 8]; // 16 GiB: more than the test JVM's heap
                    return hog[0].length;
                }
                case "stack" -> {
                    return recurse(0);
                }
                default -> throw new IllegalArgumentException(how);
            }
        }

        private static int recurse(int n) {
            return recurse(n + 1) + 1;
        }
    }

    record Run(int status, String err) {}

    static Run run(String... args) {
        CommandLine cl = Main.commandLine();
        cl.addSubcommand("fail", new Fail());
        StringWriter err = new StringWriter();
        cl.setErr(new PrintWriter(err, true));
        return new Run(cl.execute(args), err.toString());
    }

    private static void assertOneLine(Run r, int status, String... expected) {
        assertEquals(status, r.status(), r.err());
        assertEquals(1, r.err().lines().count(), r.err());
        assertTrue(r.err().startsWith("dsmoe fail: "), r.err());
        for (String e : expected) assertTrue(r.err().contains(e), "no '" + e + "' in: " + r.err());
    }

    @Test
    void anUnexpectedExceptionIsABugWithStatus1() {
        for (String how : new String[] {"npe", "state", "index", "stack"}) {
            Run r = run("fail", how);
            assertOneLine(r, 1, "internal error (a bug, please report it)", "rerun with --verbose for the stack trace");
        }
        assertOneLine(run("fail", "npe"), 1, "NullPointerException");
        assertOneLine(run("fail", "state"), 1, "IllegalStateException: the cache is in a state it should never be in");
        assertOneLine(run("fail", "index"), 1, "ArrayIndexOutOfBoundsException");
        assertOneLine(run("fail", "stack"), 1, "StackOverflowError");
    }

    @Test
    void verboseAddsTheStackTrace() {
        Run r = run("fail", "npe", "--verbose");
        assertEquals(1, r.status(), r.err());
        assertTrue(r.err().lines().findFirst().orElseThrow().contains("internal error (a bug"), r.err());
        assertTrue(r.err().contains("\tat dev.dsmoe.cli.ExitStatusTest$Fail.call"), r.err());
    }

    @Test
    void runningOutOfHeapIsOneLineWithTheFixAndStatus2() {
        Run r = run("fail", "oom");
        assertOneLine(r, 2, "ran out of memory", "the heap is", "DSMOE_HEAP");
        assertFalse(r.err().contains("bug"), r.err());
    }

    @Test
    void badInputKeepsStatus2() {
        assertOneLine(run("fail", "bad-input"), 2, "--thing 7: must be even");
        Run parse = run("fail");
        assertEquals(2, parse.status(), parse.err());
    }
}
