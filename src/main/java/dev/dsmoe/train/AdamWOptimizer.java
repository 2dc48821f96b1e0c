package dev.dsmoe.train;

import dev.dsmoe.kernels.AdamW;
import dev.dsmoe.kernels.GradNorm;
import dev.dsmoe.model.ParamLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * AdamW over the flat parameter buffer: moments m and v in buffers of the parameters' layout,
 * decoupled weight decay on the tensors {@link ParamLayout} marks as decayed (matrices, the tied
 * embedding included) and none on norm gains. Contiguous tensors with the same decay setting are
 * merged into one range, so a step is a handful of loops over the flat buffer.
 */
public final class AdamWOptimizer {

    /** A half-open range of the flat buffer and whether it decays. */
    record Range(int from, int to, boolean decay) {}

    private final float[] m, v;
    private final List<Range> ranges;
    private final float beta1, beta2, eps, weightDecay;
    private long step;

    public AdamWOptimizer(ParamLayout layout, float beta1, float beta2, float eps, float weightDecay) {
        int n = Math.toIntExact(layout.totalSize());
        this.m = new float[n];
        this.v = new float[n];
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
        List<Range> r = new ArrayList<>();
        for (ParamLayout.Tensor t : layout.tensors()) {
            int from = t.off(), to = from + Math.toIntExact(t.numel());
            if (!r.isEmpty() && r.getLast().to() == from && r.getLast().decay() == t.weightDecay()) {
                r.set(r.size() - 1, new Range(r.getLast().from(), to, t.weightDecay()));
            } else {
                r.add(new Range(from, to, t.weightDecay()));
            }
        }
        this.ranges = List.copyOf(r);
    }

    /** The paper's settings: β = (0.9, 0.95), ε = 1e-8, weight decay 0.01. */
    public static AdamWOptimizer standard(ParamLayout layout) {
        return new AdamWOptimizer(layout, 0.9f, 0.95f, 1e-8f, 0.01f);
    }

    /**
     * Clips the gradient to global norm {@code maxNorm} (if positive) and applies one update
     * with learning rate {@code lr}. Returns the gradient norm before clipping; a non-finite norm
     * skips the update (and the step count) so one bad batch cannot poison the weights.
     */
    public double step(float[] params, float[] grads, float lr, double maxNorm) {
        double norm = GradNorm.norm(grads, 0, grads.length);
        if (!Double.isFinite(norm)) return norm;
        if (maxNorm > 0) {
            double f = GradNorm.clipFactor(norm, maxNorm);
            if (f < 1) GradNorm.scale(grads, 0, grads.length, (float) f);
        }
        step++;
        for (Range r : ranges) {
            AdamW.update(params, grads, m, v, r.from(), r.to(), lr, beta1, beta2, eps,
                    r.decay() ? weightDecay : 0f, step);
        }
        return norm;
    }

    /** Updates done so far. */
    public long steps() { return step; }

    /** First moments (for checkpoints). */
    public float[] m() { return m; }

    /** Second moments (for checkpoints). */
    public float[] v() { return v; }

    /** Restores the state from a checkpoint. */
    public void restore(float[] m, float[] v, long steps) {
        if (m.length != this.m.length || v.length != this.v.length) {
            throw new IllegalArgumentException("optimizer state has " + m.length + " floats, the model " + this.m.length);
        }
        System.arraycopy(m, 0, this.m, 0, m.length);
        System.arraycopy(v, 0, this.v, 0, v.length);
        this.step = steps;
    }
}
