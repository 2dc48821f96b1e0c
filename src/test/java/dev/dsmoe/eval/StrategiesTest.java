package dev.dsmoe.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.dsmoe.infer.ExpertSelection;
import java.util.List;
import org.junit.jupiter.api.Test;

class StrategiesTest {

    private static List<String> names(List<ExpertSelection> s) {
        return s.stream().map(ExpertSelection::toString).toList();
    }

    @Test
    void defaultsFollowTheFamily() {
        assertEquals(List.of("dense"), names(Strategies.defaultsFor(EvalFixtures.dense())));
        assertEquals(List.of("top-k:2", "dense"), names(Strategies.defaultsFor(EvalFixtures.smoe())));
        // DS-MoE with 4 MLP experts: K = 4/4 = 1; MoA dense throughout
        assertEquals(List.of("dense", "top-k:1", "threshold:0.48", "threshold-top-k:0.48"),
                names(Strategies.defaultsFor(EvalFixtures.dsmoe())));
    }
}
