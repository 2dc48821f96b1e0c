package dev.dsmoe.model;

import dev.dsmoe.kernels.Parallel;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Seeded, deterministic parameter initialisation (GPT-2 style):
 * <ul>
 *   <li>every matrix (embedding, routers, q/k/v/up projections, an untied lm_head):
 *       normal(0, {@value #STD});</li>
 *   <li>the residual output projections {@code o_proj} and {@code down_proj}:
 *       normal(0, {@value #STD} / sqrt(2 * num_hidden_layers));</li>
 *   <li>norm gains: exactly 1.</li>
 * </ul>
 * Routers (both tensors of an MLP router) use normal(0, {@value #STD}): the initial scores are
 * then close to uniform, so every expert starts with gradient.
 *
 * <p>Generator: {@link SplittableRandom} seeded with the seed; every tensor is cut into chunks
 * of {@value #CHUNK} elements and each chunk gets its own {@code split()} of the root stream, taken
 * in file order before any filling. Normals come from the Box-Muller transform over
 * {@code (u1, u2)} pairs, {@code u1 = 1 - nextDouble()} in (0, 1], both outputs used, computed in
 * double with {@link StrictMath} (bitwise the same on every JVM and CPU) and rounded to float.
 * Chunks are filled in parallel; the result does not depend on the thread count, and the same
 * seed gives a bitwise-identical buffer.
 */
public final class Init {

    /** Standard deviation of every initialised matrix before the residual scaling. */
    public static final double STD = 0.02;

    /** Elements per independently seeded chunk (even, so Box-Muller pairs never straddle chunks). */
    static final int CHUNK = 1 << 16;

    private Init() {}

    /** The standard deviation {@code t} is drawn with; 0 for norm gains (which are set to 1). */
    public static double std(ParamLayout.Tensor t, ModelConfig config) {
        if (t.role() == ParamLayout.Role.NORM) return 0.0;
        boolean residualOut = t.name().endsWith(".attn.o_proj.weight") || t.name().endsWith(".mlp.down_proj.weight");
        return residualOut ? STD / Math.sqrt(2.0 * config.numLayers()) : STD;
    }

    private record Chunk(int start, int end, double std, SplittableRandom rng) {}

    /**
     * Fills {@code params} (length {@link ParamLayout#totalSize()}) with the initial weights for
     * {@code seed}.
     */
    public static void initialize(ParamLayout layout, float[] params, long seed) {
        if (params.length != layout.totalSize()) {
            throw new IllegalArgumentException("parameter buffer has " + params.length
                    + " floats, the layout needs " + layout.totalSize());
        }
        SplittableRandom root = new SplittableRandom(seed);
        List<Chunk> chunks = new ArrayList<>();
        for (ParamLayout.Tensor t : layout.tensors()) {
            int off = t.off();
            int end = Math.toIntExact(t.end());
            if (t.role() == ParamLayout.Role.NORM) {
                java.util.Arrays.fill(params, off, end, 1.0f);
                continue;
            }
            double std = std(t, layout.config());
            for (int s = off; s < end; s += CHUNK) {
                chunks.add(new Chunk(s, Math.min(end, s + CHUNK), std, root.split()));
            }
        }
        Parallel.forRange(chunks.size(), 1, (lo, hi) -> {
            for (int c = lo; c < hi; c++) fill(params, chunks.get(c));
        });
    }

    private static void fill(float[] p, Chunk c) {
        SplittableRandom r = c.rng();
        double std = c.std();
        int i = c.start();
        while (i < c.end()) {
            double u1 = 1.0 - r.nextDouble(); // (0, 1]: log is finite
            double u2 = r.nextDouble();
            double rad = StrictMath.sqrt(-2.0 * StrictMath.log(u1));
            double ang = 2.0 * Math.PI * u2;
            p[i++] = (float) (std * rad * StrictMath.cos(ang));
            if (i < c.end()) p[i++] = (float) (std * rad * StrictMath.sin(ang));
        }
    }
}
