package dev.dsmoe.model;

import java.util.SplittableRandom;

/** Seeded random parameters and tokens for tests of tiny models. */
public final class RandomParams {

    private RandomParams() {}

    /** Parameters with std 0.3 (norm gains 1 ± 0.2) so attention and routing are far from uniform. */
    public static float[] params(ParamLayout layout, long seed) {
        float[] p = layout.newBuffer();
        SplittableRandom r = new SplittableRandom(seed);
        for (ParamLayout.Tensor t : layout.tensors()) {
            for (int i = t.off(); i < t.off() + t.numel(); i++) {
                p[i] = t.role() == ParamLayout.Role.NORM ? (float) (1 + 0.2 * r.nextGaussian())
                        : (float) (0.3 * r.nextGaussian());
            }
        }
        return p;
    }

    /** {@code n} tokens drawn uniformly from {@code [0, vocab)}. */
    public static int[] tokens(int n, int vocab, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = r.nextInt(vocab);
        return t;
    }
}
