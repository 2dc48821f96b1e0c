// Does quantizing the activations to int8 as well (llama.cpp's q8_0 x q8_0 dot) pay in Java?
// (BENCHMARKS.md, "Int8 activations"). A single-file program with no dependency on the jar:
//
//   $JAVA_HOME/bin/java --add-modules jdk.incubator.vector bench/Int8DotProbe.java [rows cols reps]
//
// One thread, one int8 weight matrix of llama.cpp's Q8_0 layout (default 4096 x 4096, 16 MiB of
// quants: beyond L2, so each pass streams from L3/memory as decode does), one input row, three row
// kernels over the same quants and scales:
//   fp32   the engine's: widen each lane block of quants to fp32, times its block scale, FMA with
//          the fp32 input (Q8Tensor.row);
//   fp32b  the same with the scale applied once per block (dot of the block in fp32, then one FMA
//          by the scale): one multiply fewer per lane block;
//   int8   the input quantized per block of 32 to int8 (scale max|x|/127), the block's dot in
//          integers (widen both to int16, multiply, widen the products to int32 and add the two
//          halves), then one int-to-fp32 conversion and one FMA by the two scales per block.
// It prints ns per pass, GB/s of quants+scales read and the relative error of each result
// against a double-precision dot of the dequantized weights with the fp32 input.
import java.util.Arrays;
import java.util.SplittableRandom;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

public class Int8DotProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(F.vectorBitSize() / 4));
    // int8 path: 32 quants of a block as one short vector when the preferred shape is 512 bits
    static final VectorSpecies<Byte> B32 = ByteVector.SPECIES_256;
    static final VectorSpecies<Short> S32 = ShortVector.SPECIES_512;
    static final VectorSpecies<Integer> I16 = IntVector.SPECIES_512;
    static final VectorSpecies<Float> F16 = FloatVector.SPECIES_512;
    static final int BLOCK = 32;

    public static void main(String[] a) {
        int rows = a.length > 0 ? Integer.parseInt(a[0]) : 4096, cols = a.length > 1 ? Integer.parseInt(a[1]) : 4096;
        int reps = a.length > 2 ? Integer.parseInt(a[2]) : 200;
        if (F.vectorBitSize() != 512) {
            System.out.println("needs 512-bit vectors (AVX-512); this JVM prefers " + F.vectorBitSize());
            return;
        }
        SplittableRandom r = new SplittableRandom(1);
        int nb = cols / BLOCK;
        byte[] q = new byte[rows * cols];
        float[] s = new float[rows * nb], x = new float[cols], y = new float[rows];
        for (int i = 0; i < q.length; i++) q[i] = (byte) (r.nextInt(255) - 127);
        for (int i = 0; i < s.length; i++) s[i] = (float) (0.001 + 0.01 * r.nextDouble());
        for (int i = 0; i < cols; i++) x[i] = (float) r.nextGaussian();
        double[] ref = new double[rows];
        for (int i = 0; i < rows; i++) {
            double d = 0;
            for (int c = 0; c < cols; c++) d += (double) s[i * nb + c / BLOCK] * q[i * cols + c] * x[c];
            ref[i] = d;
        }
        double bytes = rows * (double) cols + 4.0 * rows * nb;
        String[] names = {"fp32", "fp32b", "int8"};
        for (int round = 0; round < 2; round++) { // round 0 warms the JIT
            for (int k = 0; k < 3; k++) {
                long[] t = new long[reps];
                for (int rep = 0; rep < reps; rep++) {
                    long t0 = System.nanoTime();
                    switch (k) {
                        case 0 -> fp32(q, s, x, y, rows, cols);
                        case 1 -> fp32b(q, s, x, y, rows, cols);
                        default -> int8(q, s, x, y, rows, cols);
                    }
                    t[rep] = System.nanoTime() - t0;
                }
                Arrays.sort(t);
                double err = 0, norm = 0;
                for (int i = 0; i < rows; i++) {
                    err += (y[i] - ref[i]) * (y[i] - ref[i]);
                    norm += ref[i] * ref[i];
                }
                if (round == 1) {
                    System.out.printf("%-6s %9.1f us/pass  %6.2f GB/s  rel. error %.2e%n", names[k], t[reps / 2] / 1e3,
                            bytes / t[reps / 2], Math.sqrt(err / norm));
                }
            }
        }
    }

    static void fp32(byte[] q, float[] s, float[] x, float[] y, int rows, int cols) {
        int nb = cols / BLOCK;
        for (int i = 0; i < rows; i++) {
            FloatVector acc = FloatVector.zero(F);
            int o = i * cols;
            for (int c = 0; c < cols; c += L) {
                FloatVector w = ((FloatVector) ByteVector.fromArray(B, q, o + c).convertShape(VectorOperators.B2F, F, 0))
                        .mul(s[i * nb + c / BLOCK]);
                acc = FloatVector.fromArray(F, x, c).fma(w, acc);
            }
            y[i] = acc.reduceLanes(VectorOperators.ADD);
        }
    }

    static void fp32b(byte[] q, float[] s, float[] x, float[] y, int rows, int cols) {
        int nb = cols / BLOCK;
        for (int i = 0; i < rows; i++) {
            FloatVector acc = FloatVector.zero(F);
            int o = i * cols;
            for (int c = 0; c < cols; c += BLOCK) {
                FloatVector blk = FloatVector.zero(F);
                for (int j = 0; j < BLOCK; j += L) {
                    blk = FloatVector.fromArray(F, x, c + j)
                            .fma((FloatVector) ByteVector.fromArray(B, q, o + c + j).convertShape(VectorOperators.B2F, F, 0), blk);
                }
                acc = blk.fma(FloatVector.broadcast(F, s[i * nb + c / BLOCK]), acc);
            }
            y[i] = acc.reduceLanes(VectorOperators.ADD);
        }
    }

    static short[] xq = new short[0];
    static float[] xs = new float[0];

    static void int8(byte[] q, float[] s, float[] x, float[] y, int rows, int cols) {
        int nb = cols / BLOCK;
        if (xq.length < cols) {
            xq = new short[cols];
            xs = new float[nb];
        }
        for (int b = 0; b < nb; b++) { // the activations' quantization, once per product (counted in the time)
            float m = 0;
            for (int j = 0; j < BLOCK; j++) m = Math.max(m, Math.abs(x[b * BLOCK + j]));
            float sc = m / 127f;
            xs[b] = sc;
            for (int j = 0; j < BLOCK; j++) xq[b * BLOCK + j] = (short) (sc == 0 ? 0 : Math.round(x[b * BLOCK + j] / sc));
        }
        for (int i = 0; i < rows; i++) {
            FloatVector acc = FloatVector.zero(F16);
            int o = i * cols;
            for (int b = 0, c = 0; b < nb; b++, c += BLOCK) {
                ShortVector p = ((ShortVector) ByteVector.fromArray(B32, q, o + c).convertShape(VectorOperators.B2S, S32, 0))
                        .mul(ShortVector.fromArray(S32, xq, c));
                IntVector d = ((IntVector) p.convertShape(VectorOperators.S2I, I16, 0))
                        .add((IntVector) p.convertShape(VectorOperators.S2I, I16, 1));
                acc = ((FloatVector) d.convertShape(VectorOperators.I2F, F16, 0)).fma(FloatVector.broadcast(F16, s[i * nb + b] * xs[b]), acc);
            }
            y[i] = acc.reduceLanes(VectorOperators.ADD);
        }
    }
}
