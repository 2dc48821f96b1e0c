package dev.dsmoe.model;

/**
 * A plain double-precision re-statement of the model (METHOD sections 2-3), written
 * independently of {@link Transformer}: explicit loops, one expert at a time, weights read by
 * their tensor names. Tests compare the engine's logits, loss and gradients against it.
 */
final class ReferenceModel {

    final ModelConfig c;
    final ParamLayout layout;
    final double[] p;

    ReferenceModel(ParamLayout layout, double[] params) {
        this.c = layout.config();
        this.layout = layout;
        this.p = params;
    }

    static double[] toDouble(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) d[i] = f[i];
        return d;
    }

    private final java.util.Map<String, ParamLayout.Tensor> cache = new java.util.HashMap<>();

    private ParamLayout.Tensor tensor(String name) {
        return cache.computeIfAbsent(name, layout::tensor);
    }

    /** Element {@code idx} (row-major over the tensor's shape) of the named weight. */
    private double w(String name, int... idx) {
        ParamLayout.Tensor t = tensor(name);
        long flat = 0;
        for (int i = 0; i < idx.length; i++) flat = flat * t.dim(i) + idx[i];
        return p[(int) (t.offset() + flat)];
    }

    static double gelu(double x) {
        return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    }

    private double[][] rmsnorm(double[][] x, String gain) {
        int n = x.length, d = c.dEmb();
        double[][] y = new double[n][d];
        for (int t = 0; t < n; t++) {
            double ms = 0;
            for (int i = 0; i < d; i++) ms += x[t][i] * x[t][i];
            double r = 1 / Math.sqrt(ms / d + c.rmsNormEps());
            for (int i = 0; i < d; i++) y[t][i] = x[t][i] * r * w(gain, i);
        }
        return y;
    }

    /** y[t][o] = Σ_i x[t][i] · W[prefix..., o, i] for a weight stored [.., out, in]. */
    private double[][] linear(double[][] x, String name, int out, int in, int... lead) {
        ParamLayout.Tensor t0 = tensor(name);
        if (t0.dim(t0.rank() - 1) != in || t0.dim(t0.rank() - 2) != out) {
            throw new IllegalStateException(name + " has shape " + java.util.Arrays.toString(t0.shape()));
        }
        long base = t0.offset();
        for (int i = 0; i < lead.length; i++) base += (long) lead[i] * out * in;
        double[][] y = new double[x.length][out];
        for (int t = 0; t < x.length; t++) {
            for (int o = 0; o < out; o++) {
                double s = 0;
                for (int i = 0; i < in; i++) s += x[t][i] * p[(int) (base + (long) o * in + i)];
                y[t][o] = s;
            }
        }
        return y;
    }

    private double[][] softmaxRows(double[][] z) {
        double[][] s = new double[z.length][];
        for (int t = 0; t < z.length; t++) {
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            for (double v : z[t]) max = Math.max(max, v);
            s[t] = new double[z[t].length];
            for (int i = 0; i < z[t].length; i++) sum += Math.exp(z[t][i] - max);
            for (int i = 0; i < z[t].length; i++) s[t][i] = Math.exp(z[t][i] - max) / sum;
        }
        return s;
    }

    private double[][] router(double[][] x, String prefix, int experts) {
        double[][] z;
        if (c.router() == ModelConfig.RouterKind.MLP) {
            int h = c.routerHiddenSize();
            double[][] hid = linear(x, prefix + ".0.weight", h, c.dEmb());
            for (double[] row : hid) for (int i = 0; i < h; i++) row[i] = gelu(row[i]);
            z = linear(hid, prefix + ".2.weight", experts, h);
        } else {
            z = linear(x, prefix + ".weight", experts, c.dEmb());
        }
        return softmaxRows(z);
    }

    private double mi(double[][] s) {
        int n = s.length, e = s[0].length;
        double[] pBar = new double[e];
        double cond = 0;
        for (double[] row : s) {
            for (int i = 0; i < e; i++) {
                pBar[i] += row[i] / n;
                cond -= row[i] * Math.log(row[i]) / n;
            }
        }
        double marg = 0;
        for (int i = 0; i < e; i++) marg -= pBar[i] * Math.log(pBar[i] + 1e-8);
        return -marg + cond;
    }

    private void rope(double[] v, int pos) {
        int dh = c.dAtt(), half = dh / 2;
        for (int i = 0; i < half; i++) {
            double freq = Math.pow(c.ropeTheta(), -2.0 * i / dh);
            double a = pos * freq, cs = Math.cos(a), sn = Math.sin(a);
            double x1 = v[i], x2 = v[i + half];
            v[i] = x1 * cs - x2 * sn;
            v[i + half] = x2 * cs + x1 * sn;
        }
    }

    /** Logits [B·T][V] and, through {@code lossOut}, the total loss (LM + weighted aux) when targets are given. */
    double[][] forward(int[] tokens, int[] targets, int batch, int seqLen, double[] lossOut) {
        int n = batch * seqLen, d = c.dEmb(), dh = c.dAtt();
        double[][] x = new double[n][d];
        for (int t = 0; t < n; t++) for (int i = 0; i < d; i++) x[t][i] = w("model.embed_tokens.weight", tokens[t], i);
        double aux = 0;
        for (int l = 0; l < c.numLayers(); l++) {
            String pre = "model.layers." + l + ".";
            // ---- mixture of attention heads, expert by expert
            double[][] h = rmsnorm(x, pre + "input_layernorm.weight");
            double[][] sAtt = null;
            if (c.nAtt() > 1) {
                sAtt = router(h, pre + "attn.router", c.nAtt());
                aux += c.auxWeightAtt() * (c.auxLoss() == ModelConfig.AuxLoss.MI ? mi(sAtt) : 0);
            }
            double[][] k = linear(h, pre + "attn.k_proj.weight", c.nKv() * dh, d);
            double[][] v = linear(h, pre + "attn.v_proj.weight", c.nKv() * dh, d);
            for (int t = 0; t < n; t++) {
                for (int g = 0; g < c.nKv(); g++) {
                    double[] kh = new double[dh];
                    System.arraycopy(k[t], g * dh, kh, 0, dh);
                    rope(kh, t % seqLen);
                    System.arraycopy(kh, 0, k[t], g * dh, dh);
                }
            }
            double[][] attnOut = new double[n][d];
            for (int e = 0; e < c.nAtt(); e++) {
                double[][] q = linear(h, pre + "attn.q_proj.weight", c.nHead() * dh, d, e);
                double[][] o = new double[n][c.nHead() * dh];
                for (int b = 0; b < batch; b++) {
                    for (int j = 0; j < c.nHead(); j++) {
                        int g = j * c.nKv() / c.nHead();
                        for (int i = 0; i < seqLen; i++) {
                            double[] qi = new double[dh];
                            System.arraycopy(q[b * seqLen + i], j * dh, qi, 0, dh);
                            rope(qi, i);
                            double[] sc = new double[i + 1];
                            double max = Double.NEGATIVE_INFINITY;
                            for (int jj = 0; jj <= i; jj++) {
                                double s = 0;
                                for (int u = 0; u < dh; u++) s += qi[u] * k[b * seqLen + jj][g * dh + u];
                                sc[jj] = s / Math.sqrt(dh);
                                max = Math.max(max, sc[jj]);
                            }
                            double sum = 0;
                            for (int jj = 0; jj <= i; jj++) sum += (sc[jj] = Math.exp(sc[jj] - max));
                            for (int jj = 0; jj <= i; jj++) {
                                for (int u = 0; u < dh; u++) {
                                    o[b * seqLen + i][j * dh + u] += sc[jj] / sum * v[b * seqLen + jj][g * dh + u];
                                }
                            }
                        }
                    }
                }
                double[][] ei = linear(o, pre + "attn.o_proj.weight", d, c.nHead() * dh, e);
                for (int t = 0; t < n; t++) {
                    double gate = sAtt == null ? 1 : sAtt[t][e];
                    for (int i = 0; i < d; i++) attnOut[t][i] += gate * ei[t][i];
                }
            }
            for (int t = 0; t < n; t++) for (int i = 0; i < d; i++) x[t][i] += attnOut[t][i];

            // ---- mixture of MLP experts, expert by expert
            double[][] h2 = rmsnorm(x, pre + "post_attention_layernorm.weight");
            double[][] sMlp = null;
            boolean[][] selected = new boolean[n][c.nFfd()];
            for (boolean[] row : selected) java.util.Arrays.fill(row, true);
            if (c.nFfd() > 1) {
                sMlp = router(h2, pre + "mlp.router", c.nFfd());
                if (c.trainingRouting() == ModelConfig.TrainingRouting.TOP_K) {
                    int[] counts = new int[c.nFfd()];
                    for (int t = 0; t < n; t++) {
                        java.util.Arrays.fill(selected[t], false);
                        for (int r = 0; r < c.trainingTopK(); r++) {
                            int best = -1;
                            for (int e = 0; e < c.nFfd(); e++) {
                                if (!selected[t][e] && (best < 0 || sMlp[t][e] > sMlp[t][best])) best = e;
                            }
                            selected[t][best] = true;
                            counts[best]++;
                        }
                    }
                    if (c.auxLoss() == ModelConfig.AuxLoss.SWITCH) {
                        double sw = 0;
                        for (int e = 0; e < c.nFfd(); e++) {
                            double pbar = 0;
                            for (int t = 0; t < n; t++) pbar += sMlp[t][e] / n;
                            sw += (double) counts[e] / (n * c.trainingTopK()) * pbar;
                        }
                        aux += c.auxWeightFfd() * c.nFfd() * sw;
                    }
                }
                if (c.auxLoss() == ModelConfig.AuxLoss.MI) aux += c.auxWeightFfd() * mi(sMlp);
            }
            double[][] mlpOut = new double[n][d];
            for (int e = 0; e < c.nFfd(); e++) {
                double[][] u = linear(h2, pre + "mlp.up_proj.weight", c.dFfd(), d, e);
                for (double[] row : u) for (int i = 0; i < row.length; i++) row[i] = gelu(row[i]);
                double[][] ye = linear(u, pre + "mlp.down_proj.weight", d, c.dFfd(), e);
                for (int t = 0; t < n; t++) {
                    if (!selected[t][e]) continue;
                    double gate = sMlp == null ? 1 : sMlp[t][e];
                    for (int i = 0; i < d; i++) mlpOut[t][i] += gate * ye[t][i];
                }
            }
            for (int t = 0; t < n; t++) for (int i = 0; i < d; i++) x[t][i] += mlpOut[t][i];
        }
        double[][] hf = rmsnorm(x, "model.norm.weight");
        String head = c.tieWordEmbeddings() ? "model.embed_tokens.weight" : "lm_head.weight";
        double[][] logits = linear(hf, head, c.vocabSize(), d);
        if (targets != null) {
            double lm = 0;
            int counted = 0;
            for (int t = 0; t < n; t++) {
                if (targets[t] < 0) continue;
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (double z : logits[t]) max = Math.max(max, z);
                for (double z : logits[t]) sum += Math.exp(z - max);
                lm += -(logits[t][targets[t]] - max - Math.log(sum));
                counted++;
            }
            lossOut[0] = lm / Math.max(1, counted) + aux;
        }
        return logits;
    }
}
