package dev.dsmoe.cli;

import java.util.Locale;

/**
 * The command line's progress display, on stderr: whether stderr is a terminal, the one-line
 * status redrawn there, the bar, durations and ETA the verbs' progress lines are made of, and
 * {@link Progress}, which decides when a piece of work shows its progress.
 */
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

    /** {@code done} of {@code total} as a bar of 20 characters: {@code [#####---------------]}. */
    static String bar(long done, long total) {
        int w = 20, filled = (int) (w * done / Math.max(1, total));
        return "[" + "#".repeat(filled) + "-".repeat(w - filled) + "]";
    }

    /** A duration as progress lines give it: {@code 2m05s}, {@code 1h02m}. */
    static String duration(double s) {
        long t = (long) s;
        return t >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", t / 3600, t / 60 % 60)
                : String.format(Locale.ROOT, "%dm%02ds", t / 60, t % 60);
    }

    /** A duration as summaries and logs give it: {@code 0.4 s}, {@code 2m 05s}. */
    static String seconds(double s) {
        if (s < 60) return String.format(Locale.ROOT, "%.1f s", s);
        return String.format(Locale.ROOT, "%dm %02ds", (long) s / 60, (long) s % 60);
    }

    /** {@code " ETA 2m05s"} for the time left after {@code seconds} spent on {@code fraction} of the work; empty before any or at the end. */
    static String eta(double seconds, double fraction) {
        return fraction > 0 && fraction < 1 ? " ETA " + duration(remaining(seconds, fraction)) : "";
    }

    /** The seconds left after {@code seconds} spent on {@code fraction} (&gt; 0) of the work, at the same rate: 0 at the end. */
    static double remaining(double seconds, double fraction) {
        return seconds * (1 - fraction) / fraction;
    }

    /**
     * When one piece of work shows its progress: on a terminal, the status line at most every
     * 200 ms and at the end; elsewhere, when the work has a log, a line every 10 s.
     */
    static final class Progress {
        private static final long REDRAW = 200_000_000L, LOG_EVERY = 10_000_000_000L;
        private final String log;
        private long lastDraw, lastLine;

        /**
         * {@code log}: what the lines written off a terminal start with (e.g. {@code "dsmoe eval: "}),
         * or null for no lines there; {@code logAtStart}: whether the first update is logged at once
         * (else 10 s after this display is made).
         */
        Progress(String log, boolean logAtStart) {
            this.log = log;
            this.lastLine = logAtStart ? System.nanoTime() - LOG_EVERY : System.nanoTime();
        }

        /** Whether to show {@code done} of {@code total} now; {@code force}: off a terminal, log it whatever the time. */
        boolean due(long done, long total, boolean force) {
            long now = System.nanoTime();
            if (isInteractive()) {
                if (now - lastDraw < REDRAW && done < total) return false;
                lastDraw = now;
                return true;
            }
            if (log == null || !force && now - lastLine < LOG_EVERY) return false;
            lastLine = now;
            return true;
        }

        /** The status line on a terminal, else a line of the log. */
        void show(String line) {
            if (isInteractive()) status(line);
            else if (log != null) System.err.println(log + line);
        }
    }
}
