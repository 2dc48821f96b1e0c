package dev.dsmoe.kernels;

/**
 * A router: probabilities {@code S = softmax(router(h))} over E experts for each token, with a
 * linear router ({@code logits = h · Woutᵀ}) or an MLP router ({@code hiddenPre = h · Whiddenᵀ},
 * {@code hiddenAct = GELU(hiddenPre)}, {@code logits = hiddenAct · Woutᵀ}); and its backward. The
 * trainer and the inference engine both route through here.
 */
public final class Routing {

    private Routing() {}

    /**
     * A router's tensors over N tokens, or their gradients: the MLP router's hidden layer before
     * and after GELU {@code [N, H]} (null for a linear router), logits and probabilities {@code [N, E]}.
     * Without a backward to follow, {@code hiddenAct} may be {@code hiddenPre} (GELU in place).
     */
    public record Buffers(TensorView hiddenPre, TensorView hiddenAct, TensorView logits, TensorView probs) {}

    /**
     * {@code out.probs = softmax(router(in))} for the first {@code rows} rows of {@code in};
     * {@code hiddenW} is null for a linear router.
     */
    public static void forward(Matmul mm, TensorView hiddenW, TensorView outW, TensorView in, int rows, Buffers out) {
        forward(mm, hiddenW, outW, in, 0, rows, out);
    }

    /** The same for rows {@code [row, row + rows)} of {@code in}, into the same rows of {@code out}'s tensors. */
    public static void forward(Matmul mm, TensorView hiddenW, TensorView outW, TensorView in, int row, int rows, Buffers out) {
        if (hiddenW != null) {
            mm.forward(out.hiddenPre, row, in, row, rows, hiddenW, false);
            forwardFromHidden(mm, hiddenW, outW, row, rows, out);
            return;
        }
        mm.forward(out.logits, row, in, row, rows, outW, false);
        Softmax.forward(out.logits.array(), out.logits.rowOff(row), out.probs.array(), out.probs.rowOff(row), rows, outW.rows);
    }

    /**
     * The rest of an MLP router's {@link #forward} once {@code out.hiddenPre}'s rows hold
     * {@code in · Whiddenᵀ} (made together with other products of the same input): GELU, the
     * output layer, the softmax.
     */
    public static void forwardFromHidden(Matmul mm, TensorView hiddenW, TensorView outW, int row, int rows, Buffers out) {
        Gelu.forward(out.hiddenPre.array(), out.hiddenPre.rowOff(row), out.hiddenAct.array(), out.hiddenAct.rowOff(row),
                rows * hiddenW.rows);
        mm.forward(out.logits, row, out.hiddenAct, row, rows, outW, false);
        Softmax.forward(out.logits.array(), out.logits.rowOff(row), out.probs.array(), out.probs.rowOff(row), rows, outW.rows);
    }

    /**
     * Backward: {@code grads.probs} holds {@code ∂L/∂S} (any auxiliary loss's gradient included);
     * backpropagates through the softmax ({@code grads.logits}) and the router (its hidden
     * gradients in {@code grads}) into the weight gradients {@code dHiddenW}, {@code dOutW} and into
     * {@code dIn}, all three accumulated.
     */
    public static void backward(Matmul mm, TensorView hiddenW, TensorView outW, TensorView dHiddenW, TensorView dOutW,
                                TensorView in, int rows, Buffers acts, Buffers grads, TensorView dIn) {
        Softmax.backward(acts.probs.array(), acts.probs.off(), grads.probs.array(), grads.probs.off(),
                grads.logits.array(), grads.logits.off(), rows, outW.rows, false);
        if (hiddenW != null) {
            mm.backward(grads.hiddenAct, dOutW, grads.logits, acts.hiddenAct, rows, outW, false);
            Gelu.backward(acts.hiddenPre.array(), acts.hiddenPre.off(), grads.hiddenAct.array(), grads.hiddenAct.off(),
                    grads.hiddenPre.array(), grads.hiddenPre.off(), rows * hiddenW.rows, false);
            mm.backward(dIn, dHiddenW, grads.hiddenPre, in, rows, hiddenW, true);
        } else {
            mm.backward(dIn, dOutW, grads.logits, in, rows, outW, true);
        }
    }
}
