package dev.dsmoe.kernels;

/**
 * A view of a matrix {@code [rows, cols]} (row stride {@code ld} elements) somewhere in memory:
 * a parameter in the flat training buffer, its gradient, an activation in an arena, or a weight
 * of a loaded model. The subclass is the element format ({@link F32Tensor}; a weight may be in
 * another) and supplies that format's kernels.
 *
 * <p>A view may hold experts: stacked along its rows (a weight {@code [E, rows, cols]}, used whole
 * as one {@code [E·rows, cols]} matrix or expert by expert) or side by side along its columns (an
 * activation {@code [N, E·w]} whose column block e belongs to expert e). {@link #expert} returns
 * the view of one, made when the view was made: views are built once (a model's load, a
 * Transformer's construction, an arena's allocation), never inside a step.
 *
 * <p>Kernels know no models: names (which layer, which projection) belong to whoever builds the
 * views ({@code ParamLayout}, {@code Activations}, {@code InferenceModel}).
 */
public abstract class TensorView {

    final int rows, cols, ld;
    private TensorView[] experts;

    TensorView(int rows, int cols, int ld) {
        if (rows < 0 || cols < 0 || ld < cols) {
            throw new IllegalArgumentException("bad view [" + rows + " x " + cols + ", ld " + ld + "]");
        }
        this.rows = rows;
        this.cols = cols;
        this.ld = ld;
    }

    /** A view of the same format and storage: {@code [rows, cols]} with row stride {@code ld}, {@code offset} elements further on. */
    abstract TensorView slice(long offset, int rows, int cols, int ld);

    public final int rows() {
        return rows;
    }

    public final int cols() {
        return cols;
    }

    /** Elements from the start of one row to the start of the next. */
    public final int ld() {
        return ld;
    }

    /** Number of experts ({@link #expert}); 1 for a plain matrix. */
    public final int experts() {
        return experts == null ? 1 : experts.length;
    }

    /** Expert {@code e}'s view; a plain matrix is its own expert 0. */
    public TensorView expert(int e) {
        if (experts == null) {
            if (e != 0) throw new IndexOutOfBoundsException("expert " + e + " of a view without experts");
            return this;
        }
        return experts[e];
    }

    /** This view with {@code n} experts stacked along its rows: expert e is rows {@code [e·rows/n, (e+1)·rows/n)}. */
    public TensorView stackedExperts(int n) {
        if (n < 1 || rows % n != 0) throw new IllegalArgumentException(rows + " rows do not split into " + n + " experts");
        TensorView v = slice(0, rows, cols, ld);
        int r = rows / n;
        v.experts = new TensorView[n];
        for (int e = 0; e < n; e++) v.experts[e] = slice((long) e * r * ld, r, cols, ld);
        return v;
    }

    /** This view with {@code n} experts side by side along its columns: expert e is columns {@code [e·cols/n, (e+1)·cols/n)}. */
    public TensorView expertColumns(int n) {
        if (n < 1 || cols % n != 0) throw new IllegalArgumentException(cols + " columns do not split into " + n + " experts");
        TensorView v = slice(0, rows, cols, ld);
        int w = cols / n;
        v.experts = new TensorView[n];
        for (int e = 0; e < n; e++) v.experts[e] = slice((long) e * w, rows, w, ld);
        return v;
    }

    /**
     * The fp32 heap array the view lies in, for the kernels that read and write activations,
     * parameters and gradients in place; a format without one throws.
     */
    public float[] array() {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " has no fp32 heap array");
    }

    /** Index of element {@code [0, 0]} in {@link #array()}. */
    public int off() {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " has no fp32 heap array");
    }

    /** Index in {@link #array()} of the first element of row {@code r}. */
    public final int rowOff(int r) {
        return off() + r * ld;
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + " [" + rows + " x " + cols + (ld != cols ? ", ld " + ld : "") + "]"
                + (experts != null ? " in " + experts.length + " experts" : "");
    }
}
