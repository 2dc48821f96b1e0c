package dev.dsmoe.train;

import dev.dsmoe.model.Init;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamLayout;
import dev.dsmoe.model.Transformer;
import java.util.SplittableRandom;

/**
 * Times training steps: forward + backward passes of a model on one fixed batch. The trainer
 * sizes a time budget with it, the quickstart shares its minutes among the models with it, and
 * {@code bench train} measures each preset's steps with it. Cold passes take several times as
 * long as warm ones while the JIT compiles the kernels, so every figure comes after warm-up passes.
 */
public final class StepTiming {

    private final Transformer model;
    private final int[] input, targets;
    private final int batch, seqLen;

    /** Passes of {@code model} on {@code input} and {@code targets}, {@code batch} sequences of {@code seqLen} tokens. */
    public StepTiming(Transformer model, int[] input, int[] targets, int batch, int seqLen) {
        this.model = model;
        this.input = input;
        this.targets = targets;
        this.batch = batch;
        this.seqLen = seqLen;
    }

    /**
     * A model of {@code c} initialised from seed 1, with gradients of its own, on a batch of token
     * ids drawn from {@code tokenSeed} (inputs and targets alternately).
     */
    public static StepTiming randomModel(ModelConfig c, int batch, int seqLen, long tokenSeed) {
        ParamLayout layout = ParamLayout.of(c);
        float[] p = layout.newBuffer(), g = layout.newBuffer();
        Init.initialize(layout, p, 1);
        int n = batch * seqLen;
        int[] in = new int[n], tgt = new int[n];
        SplittableRandom r = new SplittableRandom(tokenSeed);
        for (int i = 0; i < n; i++) {
            in[i] = r.nextInt(c.vocabSize());
            tgt[i] = r.nextInt(c.vocabSize());
        }
        return new StepTiming(new Transformer(layout, p, g), in, tgt, batch, seqLen);
    }

    public Transformer model() {
        return model;
    }

    /** One forward + backward pass; the gradients accumulate (clear them when they matter). */
    public void pass() {
        model.forwardBackward(input, targets, batch, seqLen, 1f);
    }

    /** {@code warmup} untimed passes, then the fastest of {@code timed} passes, in seconds. */
    public double fastestSeconds(int warmup, int timed) {
        for (int i = 0; i < warmup; i++) pass();
        double best = Double.MAX_VALUE;
        for (int i = 0; i < timed; i++) {
            long t0 = System.nanoTime();
            pass();
            best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
        return best;
    }
}
