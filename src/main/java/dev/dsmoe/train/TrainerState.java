package dev.dsmoe.train;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.util.List;

/**
 * {@code trainer_state.json}: everything besides the weights and moments that a resumed run
 * needs to continue bit-identically: the step, the data position, the schedule, the settings
 * that must not change across a resume (seed, shapes, optimizer, GEMM backend and thread count,
 * the data's fingerprint), the budget's history and the operational settings a resume keeps.
 *
 * <p>Format 1 (before the run's kernels, threads, data fingerprint, budget history, cosine phase
 * and operational settings were recorded) is still read: those fields are then null or zero,
 * {@link #legacy()} is true, and the trainer falls back to the current settings and records
 * them at its next checkpoint.
 *
 * <p>{@code ranks} is the number of data-parallel processes (MPI ranks) the run trained on; a
 * state written before it was recorded reads 0, which means 1 ({@link #rankCount()}).
 */
@JsonIgnoreProperties(ignoreUnknown = false)
public record TrainerState(
        int format,
        long step,
        long totalSteps,
        long tokensSeen,
        long dataPosition,
        long seed,
        int batch,
        int seqLen,
        int gradAccum,
        double lr,
        double minLr,
        long warmupSteps,
        double weightDecay,
        double clip,
        double elapsedSeconds,
        String data,
        String dataFingerprint,
        String kernels,
        int threads,
        long cosineFromStep,
        double cosineFromProgress,
        List<Budget> budgets,
        long saveEvery,
        long evalEvery,
        int evalBatches,
        boolean json,
        int ranks) {

    /**
     * One budget the run was given: from {@code step} on, as {@code given} on the command line
     * (e.g. {@code "--tokens 65536"}), it ran to {@code totalSteps}.
     */
    public record Budget(long step, String given, long totalSteps) {}

    /** The ranks the run trained on (1 for a state that predates the field). */
    public int rankCount() {
        return Math.max(1, ranks);
    }

    /** The operational settings a resume keeps unless given (saved since format 2). */
    public record Operational(long saveEvery, long evalEvery, int evalBatches, boolean json) {}

    public static final int FORMAT = 2;
    public static final String FILE = "trainer_state.json";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /** Written by a build before format 2: see the class comment. */
    @JsonIgnore
    public boolean legacy() {
        return format < 2;
    }

    /** The run's operational settings; a format-1 state saved none: then {@code current}. */
    public Operational operational(Operational current) {
        return legacy() ? current : new Operational(saveEvery, evalEvery, evalBatches, json);
    }

    /** The budget last given (format 1: its total, read as {@code --steps}). */
    @JsonIgnore
    public Budget lastBudget() {
        return budgets == null || budgets.isEmpty() ? new Budget(0, "--steps " + totalSteps, totalSteps) : budgets.getLast();
    }

    public String toJson() {
        try {
            return JSON.writeValueAsString(this) + "\n";
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public static TrainerState fromJson(String s) throws IOException {
        TrainerState t = JSON.readValue(s, TrainerState.class);
        if (t.format() != 1 && t.format() != FORMAT) {
            throw new IOException("trainer_state.json has format " + t.format() + ", this build reads 1 and " + FORMAT);
        }
        if (!t.legacy() && (t.kernels() == null || t.threads() < 1 || t.budgets() == null || t.budgets().isEmpty())) {
            throw new IOException("trainer_state.json (format " + FORMAT + ") lacks its kernels, threads or budgets");
        }
        return t;
    }
}
