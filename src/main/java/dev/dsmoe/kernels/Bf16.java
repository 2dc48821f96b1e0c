package dev.dsmoe.kernels;

/** bfloat16 conversions: the top 16 bits of an IEEE-754 float, rounded to nearest even. */
public final class Bf16 {
    private Bf16() {}

    /** Rounds {@code f} to the nearest bfloat16 (ties to even); NaN stays NaN. */
    public static short fromFloat(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000) {
            return (short) ((bits >>> 16) | 0x40); // quiet NaN, keep the sign
        }
        int rounding = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    /** Widens a bfloat16 to float exactly. */
    public static float toFloat(short h) {
        return Float.intBitsToFloat((h & 0xffff) << 16);
    }

    /** Converts {@code n} floats to bfloat16. */
    public static void fromFloats(float[] src, int srcOff, short[] dst, int dstOff, int n) {
        for (int i = 0; i < n; i++) dst[dstOff + i] = fromFloat(src[srcOff + i]);
    }
}
