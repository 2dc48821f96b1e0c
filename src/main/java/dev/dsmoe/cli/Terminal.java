package dev.dsmoe.cli;

/** What the CLI knows about its terminal: whether stderr is interactive, and a one-line status. */
final class Terminal {
    private static boolean statusShown;

    private Terminal() {}

    /** True when stderr is a terminal (the launcher sets DSMOE_TTY, since its filter hides the tty). */
    static boolean isInteractive() {
        if ("1".equals(System.getenv("DSMOE_TTY"))) return true;
        java.io.Console c = System.console();
        return c != null && c.isTerminal();
    }

    /** Redraws the status line on stderr (interactive terminals only). */
    static synchronized void status(String text) {
        if (!isInteractive()) return;
        System.err.print("\r\033[K  " + text);
        System.err.flush();
        statusShown = true;
    }

    /** Erases the status line if one is shown. */
    static synchronized void clearStatus() {
        if (statusShown) {
            System.err.print("\r\033[K");
            System.err.flush();
            statusShown = false;
        }
    }
}
