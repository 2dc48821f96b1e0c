package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;

/**
 * Rotary position embedding, rotate-half form (Llama / GPT-NeoX): within each head of size
 * {@code D}, element {@code i < D/2} pairs with {@code i + D/2} and the pair is rotated by
 * {@code pos * theta^(-2i/D)}:
 * <pre>
 *   y[i]       = x[i] cos - x[i+D/2] sin
 *   y[i+D/2]   = x[i+D/2] cos + x[i] sin
 * </pre>
 * An instance holds the cos/sin tables {@code [maxPositions, D/2]} (computed in double, stored
 * as float), so applying it allocates nothing.
 *
 * <p>Block layout: {@code [B, T, H, D]} as {@code B*T} rows of {@code rowStride} floats starting
 * at {@code off}; head {@code h} of row {@code (b, t)} starts at
 * {@code off + (b*T + t)*rowStride + h*D} and has position {@code startPos + t}. Rotation is
 * in place; the backward is the inverse rotation (also in place, on the gradient).
 */
public final class Rope {

    /** The usual base. */
    public static final double DEFAULT_THETA = 10000.0;

    /** The longest float[] the JVM reliably allocates. */
    private static final long MAX_TABLE = Integer.MAX_VALUE - 8;

    private final int headDim;
    private final int half;
    private final int maxPositions;
    private final double theta;
    private final float[] cos;
    private final float[] sin;

    /** Tables for heads of even size {@code headDim}, positions {@code [0, maxPositions)}. */
    public Rope(int headDim, int maxPositions, double theta) {
        if (headDim <= 0 || headDim % 2 != 0) {
            throw new IllegalArgumentException("RoPE head size must be even and > 0, got " + headDim);
        }
        if (maxPositions <= 0) throw new IllegalArgumentException("maxPositions must be > 0");
        if (!(theta > 0)) throw new IllegalArgumentException("rope theta must be > 0, got " + theta);
        this.headDim = headDim;
        this.half = headDim / 2;
        this.maxPositions = maxPositions;
        this.theta = theta;
        int n;
        try {
            n = Math.multiplyExact(maxPositions, half); // every table index p*half + i is below n, so none wraps
        } catch (ArithmeticException e) {
            n = -1;
        }
        if (n < 0 || n > MAX_TABLE) {
            throw new IllegalArgumentException("RoPE tables of " + maxPositions + " positions x " + half
                    + " frequencies are more than a Java array holds (" + MAX_TABLE + "); lower max_position_embeddings");
        }
        this.cos = new float[n];
        this.sin = new float[n];
        for (int p = 0; p < maxPositions; p++) {
            for (int i = 0; i < half; i++) {
                double freq = Math.pow(theta, -2.0 * i / headDim);
                double a = p * freq;
                cos[p * half + i] = (float) Math.cos(a);
                sin[p * half + i] = (float) Math.sin(a);
            }
        }
    }

    /** Floats of both tables of an instance, {@code 2 * maxPositions * headDim/2}, for memory estimates. */
    public static long tableFloats(int headDim, int maxPositions) {
        return Math.multiplyExact(2L * maxPositions, (long) (headDim / 2));
    }

    /** Tables with {@link #DEFAULT_THETA}. */
    public Rope(int headDim, int maxPositions) {
        this(headDim, maxPositions, DEFAULT_THETA);
    }

    public int headDim() {
        return headDim;
    }

    public int maxPositions() {
        return maxPositions;
    }

    public double theta() {
        return theta;
    }

    /** Rotates {@code H} heads of every row of the {@code [B, T, H*D]} block in place. */
    public void forward(float[] x, int off, int rowStride, int B, int T, int H, int startPos) {
        apply(x, off, rowStride, B, T, H, startPos, false);
    }

    /**
     * Rotates {@code H} heads of {@code rows} rows in place, row r at its own position
     * {@code positions[posOff + r]} (the rows of a batch of sequences, or a sparse expert's rows).
     * Each row gets the bits {@link #forward} gives it.
     */
    public void forwardAt(float[] x, int off, int rowStride, int rows, int H, int[] positions, int posOff) {
        if (rows < 0 || H < 0) throw new IllegalArgumentException("negative shape");
        if (rowStride < H * headDim) throw new IllegalArgumentException("rowStride " + rowStride + " < H*D = " + H * headDim);
        for (int r = 0; r < rows; r++) {
            int p = positions[posOff + r];
            if (p < 0 || p >= maxPositions) {
                throw new IllegalArgumentException("position " + p + " outside the RoPE table of " + maxPositions);
            }
        }
        Simd.checkRange("x", x, off, Simd.extent(rows, rowStride, (long) H * headDim));
        Parallel.forRange(rows, Simd.rowGrain(H * headDim), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int rowOff = off + r * rowStride, tab = positions[posOff + r] * half;
                for (int h = 0; h < H; h++) rotate(x, rowOff + h * headDim, tab, false);
            }
        });
    }

    /**
     * Backward: given the gradient with respect to the rotated values, rotates it back in place
     * (the transpose of the forward rotation), giving the gradient with respect to the input.
     */
    public void backward(float[] dx, int off, int rowStride, int B, int T, int H, int startPos) {
        apply(dx, off, rowStride, B, T, H, startPos, true);
    }

    private void apply(float[] x, int off, int rowStride, int B, int T, int H, int startPos, boolean inverse) {
        if (B < 0 || T < 0 || H < 0) throw new IllegalArgumentException("negative shape");
        if (rowStride < H * headDim) {
            throw new IllegalArgumentException("rowStride " + rowStride + " < H*D = " + H * headDim);
        }
        if (startPos < 0 || (T > 0 && startPos + T > maxPositions)) {
            throw new IllegalArgumentException("positions [" + startPos + ", " + (startPos + T)
                    + ") outside the RoPE table of " + maxPositions);
        }
        Simd.checkRange("x", x, off, Simd.extent((long) B * T, rowStride, (long) H * headDim));
        int rows = B * T;
        Parallel.forRange(rows, Simd.rowGrain(H * headDim), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int pos = startPos + r % T;
                int rowOff = off + r * rowStride;
                for (int h = 0; h < H; h++) rotate(x, rowOff + h * headDim, pos * half, inverse);
            }
        });
    }

    private void rotate(float[] x, int o, int tab, boolean inverse) {
        int i = 0;
        for (int bound = Simd.S.loopBound(half); i < bound; i += Simd.L) {
            FloatVector x1 = FloatVector.fromArray(Simd.S, x, o + i);
            FloatVector x2 = FloatVector.fromArray(Simd.S, x, o + half + i);
            FloatVector c = FloatVector.fromArray(Simd.S, cos, tab + i);
            FloatVector s = FloatVector.fromArray(Simd.S, sin, tab + i);
            if (inverse) s = s.neg();
            x1.mul(c).sub(x2.mul(s)).intoArray(x, o + i);
            x2.mul(c).add(x1.mul(s)).intoArray(x, o + half + i);
        }
        for (; i < half; i++) {
            float x1 = x[o + i], x2 = x[o + half + i];
            float c = cos[tab + i], s = inverse ? -sin[tab + i] : sin[tab + i];
            x[o + i] = x1 * c - x2 * s;
            x[o + half + i] = x2 * c + x1 * s;
        }
    }
}
