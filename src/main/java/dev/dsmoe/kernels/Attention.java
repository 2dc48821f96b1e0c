package dev.dsmoe.kernels;

import jdk.incubator.vector.FloatVector;

/**
 * Causal multi-head attention with grouped-query attention (GQA), forward and backward, scaled
 * by {@code 1/sqrt(D)}.
 *
 * <p>Layouts (row-major, every row {@code (b, t)} at {@code off + (b*T + t) * stride}):
 * <ul>
 *   <li>{@code q, dq}: {@code [B, T, Hq*D]} with row stride {@code qStride}; query head
 *       {@code h} occupies columns {@code [h*D, (h+1)*D)}.</li>
 *   <li>{@code k, v, dk, dv}: {@code [B, T, Hkv*D]} with row stride {@code kvStride} (k and v
 *       may share one array, e.g. a fused KV projection, at different offsets).</li>
 *   <li>{@code out, dout}: {@code [B, T, Hq*D]} with row stride {@code outStride}.</li>
 *   <li>{@code att}: the probabilities {@code [B, Hq, T, T]}, element {@code (b, h, i, j)} at
 *       {@code attOff + ((b*Hq + h)*T + i)*T + j}; the forward writes all of it (zeros above
 *       the diagonal, which the backward relies on).</li>
 *   <li>{@code kvHeadOf[h]}: the KV head in {@code [0, Hkv)} that query head {@code h} reads.
 *       Plain GQA: {@code h * Hkv / Hq}; mixture of attention experts with
 *       {@code Hq = nAtt*nHead}: {@code (h % nHead) * Hkv / nHead}.</li>
 * </ul>
 * Both passes are split across {@link Parallel} over {@code (b, kv head)} units ({@code B*Hkv}
 * of them): a unit transposes its K (forward) or V (backward) head once into its part of the
 * caller's scratch, then serves every query head that reads that KV head. A unit owns the
 * out/att/dQ rows of those query heads and the dK/dV rows of its KV head, so no two threads
 * write the same element and results do not depend on the thread count. The products are
 * vectorised over key positions (scores, dP) and over head dimensions (outputs, dQ, dK, dV), so
 * no per-element horizontal reductions are needed.
 */
public final class Attention {

    private Attention() {}

    /** Floats needed for the probabilities {@code att}: {@code B*Hq*T*T}. */
    public static long attSize(int B, int Hq, int T) {
        return Math.multiplyExact(Math.multiplyExact((long) B * Hq, T), (long) T);
    }

    /** Floats of scratch the forward needs (a transposed K per (b, kv head)): {@code B*Hkv*D*T}. */
    public static long forwardScratchSize(int B, int T, int Hkv, int D) {
        return Math.multiplyExact(Math.multiplyExact((long) B * Hkv, D), (long) T);
    }

    /**
     * Floats of scratch the backward needs (a transposed V and one head's dS per
     * (b, kv head)): {@code B*Hkv*(D*T + T*T)}.
     */
    public static long backwardScratchSize(int B, int T, int Hkv, int D) {
        return Math.multiplyExact((long) B * Hkv, (long) D * T + (long) T * T);
    }

    /** The plain GQA mapping {@code h -> h * Hkv / Hq} (Hq a multiple of Hkv). */
    public static int[] gqaMapping(int Hq, int Hkv) {
        if (Hkv <= 0 || Hq % Hkv != 0) throw new IllegalArgumentException("Hq must be a multiple of Hkv");
        int[] m = new int[Hq];
        for (int h = 0; h < Hq; h++) m[h] = h * Hkv / Hq;
        return m;
    }

    /**
     * The mixture-of-attention mapping for {@code nAtt} experts of {@code nHead} query heads
     * each over {@code nKv} shared KV heads: {@code h -> floor((h % nHead) * nKv / nHead)}.
     */
    public static int[] moaMapping(int nAtt, int nHead, int nKv) {
        if (nAtt <= 0 || nHead <= 0 || nKv <= 0) throw new IllegalArgumentException("sizes must be > 0");
        int[] m = new int[nAtt * nHead];
        for (int h = 0; h < m.length; h++) m[h] = (h % nHead) * nKv / nHead;
        return m;
    }

    /**
     * Forward: {@code att[b,h,i,:] = softmax_j<=i(q[b,i,h] . k[b,j,g] / sqrt(D))},
     * {@code out[b,i,h] = sum_j att[b,h,i,j] v[b,j,g]} with {@code g = kvHeadOf[h]}.
     * Overwrites the {@code Hq*D} head columns of out and all of att (zeros above the
     * diagonal). {@code scratch} needs {@link #forwardScratchSize} floats from
     * {@code scratchOff}.
     */
    public static void forward(float[] q, int qOff, int qStride,
                               float[] k, int kOff, float[] v, int vOff, int kvStride,
                               float[] att, int attOff,
                               float[] out, int outOff, int outStride,
                               float[] scratch, int scratchOff,
                               int B, int T, int Hq, int Hkv, int D, int[] kvHeadOf) {
        check(q, qOff, qStride, k, kOff, v, vOff, kvStride, att, attOff, out, outOff, outStride,
                B, T, Hq, Hkv, D, kvHeadOf);
        Simd.checkRange("scratch", scratch, scratchOff, forwardScratchSize(B, T, Hkv, D));
        final float scale = (float) (1.0 / Math.sqrt(D));
        Parallel.forRange(B * Hkv, (u0, u1) -> {
            for (int u = u0; u < u1; u++) {
                int b = u / Hkv, g = u % Hkv;
                int kBase = kOff + b * T * kvStride + g * D;
                int vBase = vOff + b * T * kvStride + g * D;
                int kt = scratchOff + u * D * T;
                transpose(k, kBase, kvStride, T, D, scratch, kt);
                for (int h = 0; h < Hq; h++) {
                    if (kvHeadOf[h] != g) continue;
                    for (int i = 0; i < T; i++) {
                        int n = i + 1;
                        int qi = qOff + (b * T + i) * qStride + h * D;
                        int prow = attOff + ((b * Hq + h) * T + i) * T;
                        rowTimesTransposed(q, qi, D, scratch, kt, T, n, scale, att, prow);
                        float max = Simd.max(att, prow, n);
                        float sum = Simd.expShiftStore(att, prow, att, prow, n, max);
                        Simd.scale(att, prow, att, prow, n, 1f / sum);
                        Simd.zero(att, prow + n, T - n);
                        rowCombine(att, prow, n, v, vBase, kvStride, D, out, outOff + (b * T + i) * outStride + h * D);
                    }
                }
            }
        });
    }

    /**
     * Backward from {@code dout} (layout of out) and the saved {@code att}, with q, k, v as used
     * by the forward (after RoPE). Overwrites the head columns of dq (layout of q: qStride),
     * dk and dv (layout of k/v: kvStride); dK/dV sum over every query head sharing a KV head.
     * att is read only. {@code scratch} needs {@link #backwardScratchSize} floats from
     * {@code scratchOff}.
     */
    public static void backward(float[] dout, int doutOff, int outStride,
                                float[] q, int qOff, int qStride,
                                float[] k, int kOff, float[] v, int vOff, int kvStride,
                                float[] att, int attOff,
                                float[] dq, int dqOff, float[] dk, int dkOff, float[] dv, int dvOff,
                                float[] scratch, int scratchOff,
                                int B, int T, int Hq, int Hkv, int D, int[] kvHeadOf) {
        check(q, qOff, qStride, k, kOff, v, vOff, kvStride, att, attOff, dout, doutOff, outStride,
                B, T, Hq, Hkv, D, kvHeadOf);
        Simd.checkRange("dq", dq, dqOff, Simd.extent((long) B * T, qStride, (long) Hq * D));
        Simd.checkRange("dk", dk, dkOff, Simd.extent((long) B * T, kvStride, (long) Hkv * D));
        Simd.checkRange("dv", dv, dvOff, Simd.extent((long) B * T, kvStride, (long) Hkv * D));
        Simd.checkRange("scratch", scratch, scratchOff, backwardScratchSize(B, T, Hkv, D));
        final float scale = (float) (1.0 / Math.sqrt(D));
        Parallel.forRange(B * Hkv, (u0, u1) -> {
            for (int u = u0; u < u1; u++) {
                int b = u / Hkv, g = u % Hkv;
                int kBase = kOff + b * T * kvStride + g * D;
                int vBase = vOff + b * T * kvStride + g * D;
                int dkBase = dkOff + b * T * kvStride + g * D;
                int dvBase = dvOff + b * T * kvStride + g * D;
                int vt = scratchOff + u * (D * T + T * T);
                int ds = vt + D * T;
                transpose(v, vBase, kvStride, T, D, scratch, vt);
                for (int j = 0; j < T; j++) {
                    Simd.zero(dk, dkBase + j * kvStride, D);
                    Simd.zero(dv, dvBase + j * kvStride, D);
                }
                for (int h = 0; h < Hq; h++) {
                    if (kvHeadOf[h] != g) continue;
                    int p0 = attOff + (b * Hq + h) * T * T;
                    int qh = qOff + b * T * qStride + h * D;
                    int doh = doutOff + b * T * outStride + h * D;
                    for (int i = 0; i < T; i++) {
                        int n = i + 1;
                        int prow = p0 + i * T, drow = ds + i * T;
                        // dP_ij = dO_i . V_j, then dS_ij = P_ij (dP_ij - sum_j P_ij dP_ij) * scale
                        rowTimesTransposed(dout, doh + i * outStride, D, scratch, vt, T, n, 1f, scratch, drow);
                        float s = Simd.dot(att, prow, scratch, drow, n);
                        softmaxGrad(att, prow, scratch, drow, n, s, scale);
                        Simd.zero(scratch, drow + n, T - n);
                        // dQ_i = sum_j dS_ij K_j
                        rowCombine(scratch, drow, n, k, kBase, kvStride, D, dq, dqOff + (b * T + i) * qStride + h * D);
                    }
                    // dK_j += sum_i dS_ij Q_i ; dV_j += sum_i P_ij dO_i (both zero above the diagonal)
                    columnAccumulate(scratch, ds, T, q, qh, qStride, D, dk, dkBase, kvStride);
                    columnAccumulate(att, p0, T, dout, doh, outStride, D, dv, dvBase, kvStride);
                }
            }
        });
    }

    /** {@code xt[xto + e*T + j] = x[xo + j*stride + e]} for j < T, e < D. */
    private static void transpose(float[] x, int xo, int stride, int T, int D, float[] xt, int xto) {
        for (int j = 0; j < T; j++) {
            int r = xo + j * stride;
            for (int e = 0; e < D; e++) xt[xto + e * T + j] = x[r + e];
        }
    }

    /**
     * {@code out[oo + j] = alpha * sum_e a[ao + e] * xt[xto + e*T + j]} for j < n (n <= T).
     * May also write entries {@code [n, T)} of the out row (with values the caller discards).
     */
    private static void rowTimesTransposed(float[] a, int ao, int D, float[] xt, int xto, int T, int n,
                                           float alpha, float[] out, int oo) {
        final int L = Simd.L;
        int j = 0;
        for (; j + 4 * L <= n; j += 4 * L) {
            FloatVector c0 = FloatVector.zero(Simd.S), c1 = c0, c2 = c0, c3 = c0;
            for (int e = 0; e < D; e++) {
                FloatVector av = FloatVector.broadcast(Simd.S, a[ao + e]);
                int r = xto + e * T + j;
                c0 = FloatVector.fromArray(Simd.S, xt, r).fma(av, c0);
                c1 = FloatVector.fromArray(Simd.S, xt, r + L).fma(av, c1);
                c2 = FloatVector.fromArray(Simd.S, xt, r + 2 * L).fma(av, c2);
                c3 = FloatVector.fromArray(Simd.S, xt, r + 3 * L).fma(av, c3);
            }
            c0.mul(alpha).intoArray(out, oo + j);
            c1.mul(alpha).intoArray(out, oo + j + L);
            c2.mul(alpha).intoArray(out, oo + j + 2 * L);
            c3.mul(alpha).intoArray(out, oo + j + 3 * L);
        }
        // whole vectors while they fit in the row of T (past n is allowed), then scalars
        for (; j < n && j + L <= T; j += L) {
            FloatVector c0 = FloatVector.zero(Simd.S), c1 = c0;
            int e = 0;
            for (; e + 1 < D; e += 2) {
                c0 = FloatVector.fromArray(Simd.S, xt, xto + e * T + j).fma(FloatVector.broadcast(Simd.S, a[ao + e]), c0);
                c1 = FloatVector.fromArray(Simd.S, xt, xto + (e + 1) * T + j).fma(FloatVector.broadcast(Simd.S, a[ao + e + 1]), c1);
            }
            if (e < D) c0 = FloatVector.fromArray(Simd.S, xt, xto + e * T + j).fma(FloatVector.broadcast(Simd.S, a[ao + e]), c0);
            c0.add(c1).mul(alpha).intoArray(out, oo + j);
        }
        for (; j < n; j++) {
            float s = 0f;
            for (int e = 0; e < D; e++) s += a[ao + e] * xt[xto + e * T + j];
            out[oo + j] = s * alpha;
        }
    }

    /** {@code out[oo + e] = sum_{j<n} p[po + j] * x[xo + j*stride + e]} for e < D (overwrites). */
    private static void rowCombine(float[] p, int po, int n, float[] x, int xo, int stride, int D,
                                   float[] out, int oo) {
        final int L = Simd.L;
        int c = 0;
        for (; c + 2 * L <= D; c += 2 * L) {
            // two positions per iteration into separate accumulators: shorter dependency chains
            FloatVector a0 = FloatVector.zero(Simd.S), a1 = a0, b0 = a0, b1 = a0;
            int j = 0;
            for (; j + 1 < n; j += 2) {
                FloatVector pj = FloatVector.broadcast(Simd.S, p[po + j]);
                FloatVector pk = FloatVector.broadcast(Simd.S, p[po + j + 1]);
                int r = xo + j * stride + c;
                a0 = FloatVector.fromArray(Simd.S, x, r).fma(pj, a0);
                a1 = FloatVector.fromArray(Simd.S, x, r + L).fma(pj, a1);
                b0 = FloatVector.fromArray(Simd.S, x, r + stride).fma(pk, b0);
                b1 = FloatVector.fromArray(Simd.S, x, r + stride + L).fma(pk, b1);
            }
            if (j < n) {
                FloatVector pj = FloatVector.broadcast(Simd.S, p[po + j]);
                int r = xo + j * stride + c;
                a0 = FloatVector.fromArray(Simd.S, x, r).fma(pj, a0);
                a1 = FloatVector.fromArray(Simd.S, x, r + L).fma(pj, a1);
            }
            a0.add(b0).intoArray(out, oo + c);
            a1.add(b1).intoArray(out, oo + c + L);
        }
        for (; c + L <= D; c += L) {
            FloatVector a0 = FloatVector.zero(Simd.S), b0 = a0;
            int j = 0;
            for (; j + 1 < n; j += 2) {
                a0 = FloatVector.fromArray(Simd.S, x, xo + j * stride + c).fma(FloatVector.broadcast(Simd.S, p[po + j]), a0);
                b0 = FloatVector.fromArray(Simd.S, x, xo + (j + 1) * stride + c).fma(FloatVector.broadcast(Simd.S, p[po + j + 1]), b0);
            }
            if (j < n) a0 = FloatVector.fromArray(Simd.S, x, xo + j * stride + c).fma(FloatVector.broadcast(Simd.S, p[po + j]), a0);
            a0.add(b0).intoArray(out, oo + c);
        }
        for (; c < D; c++) {
            float s = 0f;
            for (int j = 0; j < n; j++) s += p[po + j] * x[xo + j * stride + c];
            out[oo + c] = s;
        }
    }

    /**
     * {@code out[oo + j*oStride + e] += sum_{i>=j} m[mo + i*T + j] * y[yo + i*yStride + e]} for
     * j < T, e < D, where m is a [T, T] block that is zero above the diagonal.
     */
    private static void columnAccumulate(float[] m, int mo, int T, float[] y, int yo, int yStride, int D,
                                         float[] out, int oo, int oStride) {
        final int L = Simd.L;
        int c = 0;
        for (; c + L <= D; c += L) {
            int j = 0;
            for (; j + 4 <= T; j += 4) {
                FloatVector a0 = FloatVector.zero(Simd.S), a1 = a0, a2 = a0, a3 = a0;
                for (int i = j; i < T; i++) {
                    FloatVector yi = FloatVector.fromArray(Simd.S, y, yo + i * yStride + c);
                    int r = mo + i * T + j;
                    a0 = yi.fma(FloatVector.broadcast(Simd.S, m[r]), a0);
                    a1 = yi.fma(FloatVector.broadcast(Simd.S, m[r + 1]), a1);
                    a2 = yi.fma(FloatVector.broadcast(Simd.S, m[r + 2]), a2);
                    a3 = yi.fma(FloatVector.broadcast(Simd.S, m[r + 3]), a3);
                }
                a0.add(FloatVector.fromArray(Simd.S, out, oo + j * oStride + c)).intoArray(out, oo + j * oStride + c);
                a1.add(FloatVector.fromArray(Simd.S, out, oo + (j + 1) * oStride + c)).intoArray(out, oo + (j + 1) * oStride + c);
                a2.add(FloatVector.fromArray(Simd.S, out, oo + (j + 2) * oStride + c)).intoArray(out, oo + (j + 2) * oStride + c);
                a3.add(FloatVector.fromArray(Simd.S, out, oo + (j + 3) * oStride + c)).intoArray(out, oo + (j + 3) * oStride + c);
            }
            for (; j < T; j++) {
                FloatVector a0 = FloatVector.zero(Simd.S);
                for (int i = j; i < T; i++) {
                    a0 = FloatVector.fromArray(Simd.S, y, yo + i * yStride + c).fma(FloatVector.broadcast(Simd.S, m[mo + i * T + j]), a0);
                }
                a0.add(FloatVector.fromArray(Simd.S, out, oo + j * oStride + c)).intoArray(out, oo + j * oStride + c);
            }
        }
        for (; c < D; c++) {
            for (int j = 0; j < T; j++) {
                float s = 0f;
                for (int i = j; i < T; i++) s += m[mo + i * T + j] * y[yo + i * yStride + c];
                out[oo + j * oStride + c] += s;
            }
        }
    }

    /** {@code d[do + j] = p[po + j] * (d[do + j] - s) * scale} for j < n. */
    private static void softmaxGrad(float[] p, int po, float[] d, int dOff, int n, float s, float scale) {
        int j = 0;
        FloatVector sv = FloatVector.broadcast(Simd.S, s), sc = FloatVector.broadcast(Simd.S, scale);
        for (int bound = Simd.S.loopBound(n); j < bound; j += Simd.L) {
            FloatVector.fromArray(Simd.S, d, dOff + j).sub(sv).mul(FloatVector.fromArray(Simd.S, p, po + j)).mul(sc)
                    .intoArray(d, dOff + j);
        }
        for (; j < n; j++) d[dOff + j] = p[po + j] * (d[dOff + j] - s) * scale;
    }

    private static void check(float[] q, int qOff, int qStride, float[] k, int kOff, float[] v, int vOff,
                              int kvStride, float[] att, int attOff, float[] out, int outOff, int outStride,
                              int B, int T, int Hq, int Hkv, int D, int[] kvHeadOf) {
        if (B < 0 || T < 0 || Hq <= 0 || Hkv <= 0 || D <= 0) {
            throw new IllegalArgumentException("need B, T >= 0 and Hq, Hkv, D > 0");
        }
        if (qStride < Hq * D || outStride < Hq * D || kvStride < Hkv * D) {
            throw new IllegalArgumentException("row strides too small for Hq*D = " + Hq * D
                    + " / Hkv*D = " + Hkv * D);
        }
        if (kvHeadOf == null || kvHeadOf.length < Hq) throw new IllegalArgumentException("kvHeadOf needs Hq entries");
        for (int h = 0; h < Hq; h++) {
            if (kvHeadOf[h] < 0 || kvHeadOf[h] >= Hkv) {
                throw new IllegalArgumentException("kvHeadOf[" + h + "] = " + kvHeadOf[h] + " outside [0, " + Hkv + ")");
            }
        }
        long rows = (long) B * T;
        Simd.checkRange("q", q, qOff, Simd.extent(rows, qStride, (long) Hq * D));
        Simd.checkRange("k", k, kOff, Simd.extent(rows, kvStride, (long) Hkv * D));
        Simd.checkRange("v", v, vOff, Simd.extent(rows, kvStride, (long) Hkv * D));
        Simd.checkRange("out", out, outOff, Simd.extent(rows, outStride, (long) Hq * D));
        long a = attSize(B, Hq, T);
        if (a > Integer.MAX_VALUE) throw new IllegalArgumentException("att of " + a + " floats exceeds one array");
        Simd.checkRange("att", att, attOff, a);
    }
}
