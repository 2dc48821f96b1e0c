package dev.dsmoe.train;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;

/**
 * {@code trainer_state.json}: everything besides the weights and moments that a resumed run
 * needs to continue bit-identically: the step, the data position, the schedule and the settings
 * that must not change across a resume.
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
        String data) {

    public static final int FORMAT = 1;
    public static final String FILE = "trainer_state.json";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    public String toJson() {
        try {
            return JSON.writeValueAsString(this) + "\n";
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public static TrainerState fromJson(String s) throws IOException {
        TrainerState t = JSON.readValue(s, TrainerState.class);
        if (t.format() != FORMAT) throw new IOException("trainer_state.json has format " + t.format() + ", this build reads " + FORMAT);
        return t;
    }
}
