using System.Buffers.Binary;

namespace Kiln.Tests.Tensors;

/// <summary>
/// Random blocks and plain layout decoders (in double) for ggml's Q4_1, Q5_0, Q5_1 and Q8_1, written from the
/// block definitions independently of the kernels.
/// </summary>
internal static class LegacyQuantTestData
{
    /// <summary>
    /// Random blocks of <paramref name="blockBytes"/> bytes whose first <paramref name="halves"/> fp16 fields are
    /// set: the scale d in [2^-10, 2^-2) with random sign (or exactly 1), the rest (m or s) likewise (or 0).
    /// Every other byte is random.
    /// </summary>
    public static byte[] Blocks(int blocks, int blockBytes, int halves, int seed, bool unitScale = false)
    {
        var rng = new Random(seed);
        var data = new byte[blocks * blockBytes];
        rng.NextBytes(data);
        for (int b = 0; b < blocks; b++)
        {
            for (int h = 0; h < halves; h++)
            {
                ushort value = unitScale ? (h == 0 ? (ushort)0x3C00 : (ushort)0) : RandomHalf(rng);
                BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(b * blockBytes + 2 * h), value);
            }
        }
        return data;
    }

    public static byte[] Q4_1Blocks(int blocks, int seed, bool unitScale = false) => Blocks(blocks, 20, 2, seed, unitScale);
    public static byte[] Q5_0Blocks(int blocks, int seed, bool unitScale = false) => Blocks(blocks, 22, 1, seed, unitScale);
    public static byte[] Q5_1Blocks(int blocks, int seed, bool unitScale = false) => Blocks(blocks, 24, 2, seed, unitScale);
    public static byte[] Q8_1Blocks(int blocks, int seed, bool unitScale = false) => Blocks(blocks, 36, 2, seed, unitScale);

    private static ushort RandomHalf(Random rng)
    {
        float v = MathF.Pow(2f, -10f + 8f * rng.NextSingle()) * (rng.Next(2) == 0 ? 1f : -1f);
        return BitConverter.HalfToUInt16Bits((Half)v);
    }

    private static double HalfAt(ReadOnlySpan<byte> data, int offset) => KernelTestData.HalfAt(data[offset..]);

    /// <summary>The unsigned 4-bit q of element i (0..31) from the 16 packed bytes at <paramref name="qs"/>.</summary>
    public static int Nibble(ReadOnlySpan<byte> data, int qs, int i) =>
        i < 16 ? data[qs + i] & 0x0F : data[qs + i - 16] >> 4;

    /// <summary>The unsigned 5-bit q of element i: its nibble, plus bit i of the little-endian uint32 at qh as 16.</summary>
    public static int FiveBits(ReadOnlySpan<byte> data, int qh, int qs, int i) =>
        Nibble(data, qs, i) + (((data[qh + i / 8] >> (i % 8)) & 1) == 1 ? 16 : 0);

    public static double[] DecodeQ4_1(ReadOnlySpan<byte> data)
    {
        var v = new double[data.Length / 20 * 32];
        for (int b = 0; b < data.Length / 20; b++)
        {
            ReadOnlySpan<byte> block = data.Slice(b * 20, 20);
            for (int i = 0; i < 32; i++)
                v[b * 32 + i] = HalfAt(block, 0) * Nibble(block, 4, i) + HalfAt(block, 2);
        }
        return v;
    }

    public static double[] DecodeQ5_0(ReadOnlySpan<byte> data)
    {
        var v = new double[data.Length / 22 * 32];
        for (int b = 0; b < data.Length / 22; b++)
        {
            ReadOnlySpan<byte> block = data.Slice(b * 22, 22);
            for (int i = 0; i < 32; i++)
                v[b * 32 + i] = HalfAt(block, 0) * (FiveBits(block, 2, 6, i) - 16);
        }
        return v;
    }

    public static double[] DecodeQ5_1(ReadOnlySpan<byte> data)
    {
        var v = new double[data.Length / 24 * 32];
        for (int b = 0; b < data.Length / 24; b++)
        {
            ReadOnlySpan<byte> block = data.Slice(b * 24, 24);
            for (int i = 0; i < 32; i++)
                v[b * 32 + i] = HalfAt(block, 0) * FiveBits(block, 4, 8, i) + HalfAt(block, 2);
        }
        return v;
    }

    public static double[] DecodeQ8_1(ReadOnlySpan<byte> data)
    {
        var v = new double[data.Length / 36 * 32];
        for (int b = 0; b < data.Length / 36; b++)
        {
            double d = HalfAt(data, b * 36);
            for (int i = 0; i < 32; i++)
                v[b * 32 + i] = d * (sbyte)data[b * 36 + 4 + i];
        }
        return v;
    }

    /// <summary>
    /// ggml's vec_dot of a Q4_1/Q5_1 row with a Q8_1 row, in double: per block d_w*d_x*Σ q_w q_x + m_w*s_x,
    /// with q_w read by <paramref name="weightQ"/>. Also returns the sum of the terms' magnitudes for tolerances.
    /// </summary>
    public static (double Dot, double Magnitude) OffsetDotWithQ8_1(
        byte[] w, int weightBlockBytes, Func<byte[], int, int, int> weightQ, byte[] x)
    {
        double dot = 0, magnitude = 0;
        for (int b = 0; b < w.Length / weightBlockBytes; b++)
        {
            int wo = b * weightBlockBytes, xo = b * 36;
            long sumi = 0, sumAbs = 0;
            for (int i = 0; i < 32; i++)
            {
                int p = weightQ(w, wo, i) * (sbyte)x[xo + 4 + i];
                sumi += p;
                sumAbs += Math.Abs(p);
            }
            double dd = HalfAt(w, wo) * HalfAt(x, xo), offset = HalfAt(w, wo + 2) * HalfAt(x, xo + 2);
            dot += dd * sumi + offset;
            magnitude += Math.Abs(dd) * sumAbs + Math.Abs(offset);
        }
        return (dot, magnitude);
    }

    /// <summary>
    /// Bound on |dot with Q8_1 activations − dot with the float activations x| for weights whose values are
    /// <paramref name="wd"/> and whose offsets m (fp16 at byte 2 of each block) meet the activations' s field.
    /// Each activation is off by at most 0.5 + 127·2^-11 steps of its fp16 scale; s differs from the sum of the
    /// dequantized activations only by two fp16 roundings (of s itself and of d), each 2^-11 of |d·Σq|.
    /// <paramref name="magnitude"/> is Σ|w·x|, for the float summation slack.
    /// </summary>
    public static double Q8_1ActivationBound(double[] wd, byte[] xq, byte[] w, int weightBlockBytes, float[] x, out double magnitude)
    {
        double bound = 0;
        magnitude = 0;
        for (int b = 0; b < xq.Length / 36; b++)
        {
            double dx = HalfAt(xq, b * 36) * (1 + 1.0 / 1024);
            long sumq = 0;
            for (int j = 0; j < 32; j++)
            {
                bound += Math.Abs(wd[b * 32 + j]) * dx * (0.5 + 127.0 / 2048);
                magnitude += Math.Abs(wd[b * 32 + j] * x[b * 32 + j]);
                sumq += (sbyte)xq[b * 36 + 4 + j];
            }
            bound += Math.Abs(HalfAt(w, b * weightBlockBytes + 2)) * (Math.Abs(sumq) * dx * 2.0 / 2048 + 1e-7);
        }
        return bound;
    }
}
