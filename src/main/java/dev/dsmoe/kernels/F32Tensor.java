package dev.dsmoe.kernels;

/**
 * An fp32 view: a slice of a {@code float[]} (training parameters, gradients, activations).
 */
public final class F32Tensor extends TensorView {

    private final float[] array;
    private final int off;

    private F32Tensor(float[] array, int off, int rows, int cols, int ld) {
        super(rows, cols, ld);
        this.array = array;
        this.off = off;
    }

    /** The {@code [rows, cols]} matrix at {@code array[off..]}, rows contiguous. */
    public static F32Tensor of(float[] array, int off, int rows, int cols) {
        return new F32Tensor(array, off, rows, cols, cols);
    }

    /** A whole array as a {@code [rows, cols]} matrix. */
    public static F32Tensor of(float[] array, int rows, int cols) {
        return of(array, 0, rows, cols);
    }

    @Override
    F32Tensor slice(long offset, int rows, int cols, int ld) {
        return new F32Tensor(array, Math.toIntExact(off + offset), rows, cols, ld);
    }

    @Override
    public F32Tensor expert(int e) {
        return (F32Tensor) super.expert(e);
    }

    @Override
    public F32Tensor stackedExperts(int n) {
        return (F32Tensor) super.stackedExperts(n);
    }

    @Override
    public F32Tensor expertColumns(int n) {
        return (F32Tensor) super.expertColumns(n);
    }

    @Override
    public float[] array() {
        return array;
    }

    @Override
    public int off() {
        return off;
    }
}
