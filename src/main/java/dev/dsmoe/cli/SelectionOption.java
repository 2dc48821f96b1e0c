package dev.dsmoe.cli;

import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.model.ModelConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import picocli.CommandLine.Option;

/** Mixin of eval and generate: {@code --strategy}, the expert selection (eval runs each one given). */
final class SelectionOption {

    @Option(names = "--strategy", paramLabel = "SELECTION",
            description = {"Expert selection, default: see above (eval evaluates each one given, generate uses the last).",
                    "Forms: " + ExpertSelection.FORMS + "."})
    List<String> given;

    /** The selections given, in order and without repeats, checked against {@code c}; {@code defaults} when none is. */
    List<ExpertSelection> all(ModelConfig c, Supplier<List<ExpertSelection>> defaults) {
        if (given == null || given.isEmpty()) return defaults.get();
        List<ExpertSelection> out = new ArrayList<>();
        for (String s : given) {
            ExpertSelection sel = parse(s, c);
            if (!out.contains(sel)) out.add(sel);
        }
        return out;
    }

    /** The last selection given (a later option wins), checked against {@code c}; the model's own when none is. */
    ExpertSelection last(ModelConfig c) {
        return given == null || given.isEmpty() ? ExpertSelection.defaultFor(c) : parse(given.getLast(), c);
    }

    private static ExpertSelection parse(String s, ModelConfig c) {
        try {
            return ExpertSelection.parse(s, c);
        } catch (IllegalArgumentException e) {
            throw new Errors.UserError("--strategy: " + e.getMessage());
        }
    }
}
