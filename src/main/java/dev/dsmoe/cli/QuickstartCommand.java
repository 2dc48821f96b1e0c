package dev.dsmoe.cli;

import dev.dsmoe.data.CorpusPreparer;
import dev.dsmoe.eval.Quickstart;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.train.Trainer;
import dev.dsmoe.train.TrainerState;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ./dsmoe quickstart}: the paper's comparison end to end on the default corpus
 * ({@link Quickstart}, which does the work): this class parses the options, shows the run's
 * progress and prints the table and completions.
 */
@Command(name = "quickstart", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Prepare the default corpus (the JDK's lib/src.zip), train size-matched Dense, SMoE and DS-MoE",
                "for the same token budget, evaluate and time them, and print the paper-style table.",
                "Writes results.md, results.json, loss_curves.png and the DS-MoE epsilon sweep (perplexity against active",
                "parameters and against decode tok/s timed at each epsilon) into --dir.",
                "Re-running reuses finished stages (--fresh starts over)."})
final class QuickstartCommand implements Callable<Integer> {

    @Option(names = "--minutes", defaultValue = "20", description = "Total time budget (training gets about 70%%). Default: ${DEFAULT-VALUE}.")
    double minutes;

    @Option(names = "--dir", defaultValue = "runs/quickstart", description = "Run directory. Default: ${DEFAULT-VALUE}.")
    Path dir;

    @Option(names = "--input", description = "Corpus instead of the JDK's src.zip (a zip, a directory, text or JSONL files).")
    Path input;

    @Option(names = "--vocab-size", defaultValue = "8192", description = "Tokenizer vocabulary. Default: ${DEFAULT-VALUE}.")
    int vocabSize;

    @Option(names = "--eval-tokens", defaultValue = "65536", description = "Validation tokens scored per strategy. Default: ${DEFAULT-VALUE}.")
    long evalTokens;

    @Option(names = "--code-items", defaultValue = "200", description = "Items of the zero-shot code task. Default: ${DEFAULT-VALUE}.")
    int codeItems;

    @Option(names = "--tiny", description = "Tiny models and short runs: a smoke test of the whole pipeline, not a result.")
    boolean tiny;

    @Option(names = "--fresh", description = "Delete the run directory's models and results first (the prepared data is kept).")
    boolean fresh;

    private long start;

    @Override
    public Integer call() throws Exception {
        start = System.nanoTime();
        Quickstart.Options o = new Quickstart.Options(minutes, dir,
                PrepareCommand.inputsOrDefault(input == null ? null : List.of(input)), vocabSize, evalTokens, codeItems, tiny, fresh);
        PrepareCommand.checkVocabSize(vocabSize);
        Quickstart.Run run;
        try {
            run = new Quickstart(o, new Display()).run();
        } finally {
            Terminal.clearStatus();
        }
        System.out.println();
        System.out.print(run.report().table());
        System.out.println();
        if (!run.report().sweepTable().isEmpty()) {
            System.out.print(run.report().sweepTable());
            System.out.println();
        }
        run.results().completions().forEach((model, text) -> System.out.printf("--- %s (greedy)%n%s%s%n", model, Quickstart.PROMPT, text));
        say("done in %s: %s, %s, %s", Terminal.seconds(elapsed()), run.report().resultsMd(), run.report().lossCurves(),
                run.report().sweep());
        return 0;
    }

    private double elapsed() {
        return (System.nanoTime() - start) / 1e9;
    }

    private void say(String fmt, Object... args) {
        Terminal.clearStatus();
        System.err.printf(Locale.ROOT, "[%s] %s%n", Terminal.seconds(elapsed()), String.format(Locale.ROOT, fmt, args));
    }

    /** The run's log on stderr, in the prepare and train verbs' words for those stages. */
    private final class Display implements Quickstart.Listener {
        private TrainCommand.ProgressListener training;

        @Override
        public void say(String line) {
            QuickstartCommand.this.say("%s", line);
        }

        @Override
        public void status(String text) {
            Terminal.status(text);
        }

        @Override
        public CorpusPreparer.Listener preparing() {
            return new PrepareCommand.Progress();
        }

        @Override
        public void prepared(Path data, CorpusPreparer.Result result) {
            Terminal.clearStatus();
            PrepareCommand.report(data, result);
        }

        @Override
        public void checkTraining(ModelConfig c, boolean resume, int batch, int seqLen) {
            MemoryCheck.training(c, resume, batch, seqLen);
        }

        @Override
        public void resuming(Path dir, TrainerState s) {
            String note = ComputeOptions.useSaved(s, dir, dir.toString(), false, false);
            if (note != null) say("   note: " + note);
        }

        @Override
        public Trainer.Listener training(ModelConfig c) {
            training = new TrainCommand.ProgressListener(false, c);
            return training;
        }

        @Override
        public void trained(Trainer trainer, Path out) {
            training.finish(trainer, out);
        }

        @Override
        public void noValidation() {
            System.err.println("dsmoe train: note: the validation shard is shorter than one window; no validation loss");
        }
    }
}
