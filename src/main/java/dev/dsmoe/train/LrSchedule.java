package dev.dsmoe.train;

/**
 * Linear warm-up from 0 to {@code peak} over {@code warmupSteps}, then cosine decay to
 * {@code min} at {@code totalSteps} (and {@code min} after). Steps count from 1.
 *
 * <p>The cosine runs from step {@code fromStep}, where it stands at phase {@code fromProgress}
 * (0 = peak, 1 = min), to {@code totalSteps}. A planned run has {@code fromStep = warmupSteps},
 * {@code fromProgress = 0}; {@link #extendedTo} moves both when a resumed run's budget grows.
 */
public record LrSchedule(double peak, double min, long warmupSteps, long totalSteps, long fromStep, double fromProgress) {

    public LrSchedule {
        if (!(peak > 0) || min < 0 || min > peak) {
            throw new IllegalArgumentException("learning rates need 0 <= min (" + min + ") <= peak (" + peak + "), peak > 0");
        }
        if (warmupSteps < 0 || totalSteps < 1) throw new IllegalArgumentException("warm-up must be >= 0 and total steps >= 1");
        if (fromStep < warmupSteps || !(fromProgress >= 0 && fromProgress <= 1)) {
            throw new IllegalArgumentException("the cosine must start after the warm-up (" + fromStep + " < " + warmupSteps
                    + ") at a phase in [0, 1] (" + fromProgress + ")");
        }
    }

    /** The schedule of a run planned for {@code totalSteps} from the start. */
    public LrSchedule(double peak, double min, long warmupSteps, long totalSteps) {
        this(peak, min, warmupSteps, totalSteps, warmupSteps, 0);
    }

    public double lr(long step) {
        if (step <= warmupSteps) return peak * step / Math.max(1, warmupSteps);
        if (step >= totalSteps) return min;
        return min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * progress(step)));
    }

    /** Where the cosine stands after {@code step} (0 during the warm-up, 1 from the last step on). */
    public double progress(long step) {
        if (step <= warmupSteps) return 0;
        if (step >= totalSteps) return 1;
        // For a planned run (phase 0 at the warm-up's end) this is exactly (step - warm-up) / (total - warm-up).
        return fromProgress + (1 - fromProgress) * ((double) (step - fromStep) / Math.max(1, totalSteps - fromStep));
    }

    /**
     * The schedule after step {@code step} of a run whose budget grows to {@code newTotal}: the
     * cosine keeps its phase, so the rate continues from where it is (no jump), and the rest of
     * the curve is stretched over the steps now left, reaching {@code min} at the new total. A
     * run still warming up keeps its warm-up and gets the cosine it would have had if planned
     * for {@code newTotal}; a finished run (phase 1) continues at {@code min}.
     */
    public LrSchedule extendedTo(long step, long newTotal) {
        if (newTotal <= totalSteps || step > totalSteps) {
            throw new IllegalArgumentException("an extension needs step <= total < new total, got step " + step
                    + ", total " + totalSteps + ", new total " + newTotal);
        }
        if (step <= warmupSteps) return new LrSchedule(peak, min, warmupSteps, newTotal, warmupSteps, 0);
        return new LrSchedule(peak, min, warmupSteps, newTotal, step, progress(step));
    }
}
