package dev.dsmoe.eval;

import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.model.ModelConfig;
import java.util.ArrayList;
import java.util.List;

/** The expert selections an evaluation runs when none is asked for (METHOD section 5). */
public final class Strategies {

    private Strategies() {}

    /** The paper's threshold ε. */
    public static final double PAPER_EPSILON = 0.48;

    /**
     * Dense model: dense only. SMoE ({@code training_routing top_k}): its training top-k, then
     * dense. DS-MoE: dense, top-k on the MLP with {@code K = N_ffd/4} (at least 1), threshold 0.48
     * and threshold-top-k 0.48 on the MLP, MoA dense throughout (as the paper). A DS-MoE with a
     * single MLP expert gets the threshold selections on its MoA routers instead.
     */
    public static List<ExpertSelection> defaultsFor(ModelConfig c) {
        List<ExpertSelection> s = new ArrayList<>();
        if (c.nAtt() == 1 && c.nFfd() == 1) {
            s.add(ExpertSelection.dense());
        } else if (c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K) {
            s.add(ExpertSelection.defaultFor(c).check(c));
            s.add(ExpertSelection.dense());
        } else if (c.nFfd() > 1) {
            s.add(ExpertSelection.dense());
            s.add(ExpertSelection.topK(Math.max(1, c.nFfd() / 4)));
            s.add(ExpertSelection.threshold(PAPER_EPSILON));
            s.add(new ExpertSelection(ExpertSelection.Rule.DENSE, ExpertSelection.Rule.thresholdTopK(PAPER_EPSILON)));
        } else {
            s.add(ExpertSelection.dense());
            s.add(new ExpertSelection(ExpertSelection.Rule.threshold(PAPER_EPSILON), ExpertSelection.Rule.DENSE));
            s.add(new ExpertSelection(ExpertSelection.Rule.thresholdTopK(PAPER_EPSILON), ExpertSelection.Rule.DENSE));
        }
        return s;
    }
}
