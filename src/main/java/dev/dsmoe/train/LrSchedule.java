package dev.dsmoe.train;

/**
 * Linear warm-up from 0 to {@code peak} over {@code warmupSteps}, then cosine decay to
 * {@code min} at {@code totalSteps} (and {@code min} after). Steps count from 1.
 */
public record LrSchedule(double peak, double min, long warmupSteps, long totalSteps) {

    public LrSchedule {
        if (!(peak > 0) || min < 0 || min > peak) {
            throw new IllegalArgumentException("learning rates need 0 <= min (" + min + ") <= peak (" + peak + "), peak > 0");
        }
        if (warmupSteps < 0 || totalSteps < 1) throw new IllegalArgumentException("warm-up must be >= 0 and total steps >= 1");
    }

    public double lr(long step) {
        if (step <= warmupSteps) return peak * step / Math.max(1, warmupSteps);
        if (step >= totalSteps) return min;
        double progress = (double) (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
        return min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * progress));
    }
}
