package dev.dsmoe.model;

import dev.dsmoe.kernels.F32Tensor;

/**
 * Makes the arrays of an arena (training activations, an inference engine's buffers), or only
 * counts them. Running the allocating constructor with a counter is how a {@link Footprint} is
 * estimated, so the estimate cannot drift from what is allocated. A counter hands out empty
 * arrays: a constructor run with one must not read lengths back.
 */
public final class ArrayAllocator {

    private static final float[] NO_FLOATS = {};
    private static final int[] NO_INTS = {};
    private static final long[] NO_LONGS = {};
    private static final double[] NO_DOUBLES = {};

    private final boolean allocates;
    private final String hint;
    private long bytes, longest;

    private ArrayAllocator(boolean allocates, String hint) {
        this.allocates = allocates;
        this.hint = hint;
    }

    /** Allocates; an array longer than a Java array holds is an error ending in {@code hint} (the fix). */
    public static ArrayAllocator allocating(String hint) {
        return new ArrayAllocator(true, hint);
    }

    /** Counts only. Sizes past a long throw {@link ArithmeticException}. */
    public static ArrayAllocator counting() {
        return new ArrayAllocator(false, "");
    }

    /** Whether arrays are made (false: only counted). */
    public boolean allocates() {
        return allocates;
    }

    /** A float array of {@code dims[0] * dims[1] * ...} elements. */
    public float[] floats(long... dims) {
        long n = count(dims, Float.BYTES);
        return allocates ? new float[(int) n] : NO_FLOATS;
    }

    /** An fp32 matrix {@code [rows, cols]} as a view; a counter counts it and returns null. */
    public F32Tensor matrix(long rows, long cols) {
        float[] a = floats(rows, cols);
        return allocates ? F32Tensor.of(a, (int) rows, (int) cols) : null;
    }

    /** A matrix {@code [rows, experts·width]} whose expert e is column block e; null from a counter. */
    public F32Tensor expertMatrix(long rows, int experts, long width) {
        F32Tensor m = matrix(rows, Math.multiplyExact(experts, width));
        return m == null ? null : m.expertColumns(experts);
    }

    public int[] ints(long... dims) {
        long n = count(dims, Integer.BYTES);
        return allocates ? new int[(int) n] : NO_INTS;
    }

    public long[] longs(long... dims) {
        long n = count(dims, Long.BYTES);
        return allocates ? new long[(int) n] : NO_LONGS;
    }

    public double[] doubles(long... dims) {
        long n = count(dims, Double.BYTES);
        return allocates ? new double[(int) n] : NO_DOUBLES;
    }

    /** Counts an object the caller makes itself, by its own size function (bytes, longest array). */
    public void add(long objectBytes, long longestArray) {
        bytes = Math.addExact(bytes, objectBytes);
        longest = Math.max(longest, longestArray);
    }

    /** Bytes counted so far. */
    public long bytes() {
        return bytes;
    }

    /** The most elements of any one array counted so far. */
    public long longest() {
        return longest;
    }

    /** What was counted, as one heap part called {@code what}. */
    public Footprint footprint(String what) {
        return Footprint.heap(what, bytes, longest);
    }

    private long count(long[] dims, int elementBytes) {
        long n = 1;
        try {
            for (long d : dims) n = Math.multiplyExact(n, d);
        } catch (ArithmeticException e) {
            if (allocates) throw tooLarge("over 2^63");
            throw e;
        }
        if (allocates && n > ParamLayout.MAX_ARRAY_LENGTH) throw tooLarge(Long.toString(n));
        add(Math.multiplyExact(n, (long) elementBytes), n);
        return n;
    }

    private IllegalArgumentException tooLarge(String n) {
        return new IllegalArgumentException("an array of " + n + " elements is more than a Java array holds ("
                + ParamLayout.MAX_ARRAY_LENGTH + ")" + (hint.isEmpty() ? "" : "; " + hint));
    }
}
