using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// ggml's dequantize_row_q2_K … q6_K written out plainly, loop for loop as in ggml-quants.c, independent of
/// the kernels. Each element comes out as (scale, q, offset) with value = scale*q - offset, where scale = d*sc and
/// offset = dmin*m are the float products ggml forms (exact: a half times a 6- or 8-bit integer), so the float
/// value ggml computes and the exact value in double both follow. Also random blocks and Q8_K helpers.
/// </summary>
internal static class KQuantReference
{
    public static readonly GgmlType[] Types = [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    public static TheoryData<GgmlType> TypeData() => new(Types);

    /// <summary>Super-block counts for the kernel tests.</summary>
    public static readonly int[] BlockCounts = [1, 2, 3, 5, 16];

    public static TheoryData<GgmlType, int> TypeAndBlockCountData()
    {
        var data = new TheoryData<GgmlType, int>();
        foreach (var t in Types)
            foreach (int b in BlockCounts)
                data.Add(t, b);
        return data;
    }

    public readonly record struct Element(float Scale, int Q, float Offset)
    {
        /// <summary>The float ggml's dequantize computes.</summary>
        public float Value => Scale * Q - Offset;
    }

    private static float Half(ReadOnlySpan<byte> b, int at) => KernelTestData.HalfAt(b[at..]);

    public static int BlockBytes(GgmlType type) => GgmlTypeTraits.BlockBytes(type);

    public static Element[] Decode(GgmlType type, ReadOnlySpan<byte> data)
    {
        int bytes = BlockBytes(type);
        var y = new Element[data.Length / bytes * 256];
        for (int i = 0; i < data.Length / bytes; i++)
        {
            ReadOnlySpan<byte> x = data.Slice(i * bytes, bytes);
            Span<Element> o = y.AsSpan(i * 256, 256);
            switch (type)
            {
                case GgmlType.Q2_K: DecodeQ2_K(x, o); break;
                case GgmlType.Q3_K: DecodeQ3_K(x, o); break;
                case GgmlType.Q4_K: DecodeQ4_K(x, o); break;
                case GgmlType.Q5_K: DecodeQ5_K(x, o); break;
                case GgmlType.Q6_K: DecodeQ6_K(x, o); break;
                default: throw new ArgumentOutOfRangeException(nameof(type));
            }
        }
        return y;
    }

    public static float[] Values(GgmlType type, ReadOnlySpan<byte> data) => Decode(type, data).Select(e => e.Value).ToArray();

    // block_q2_K { uint8 scales[16]; uint8 qs[64]; half d; half dmin; }
    private static void DecodeQ2_K(ReadOnlySpan<byte> x, Span<Element> y)
    {
        float d = Half(x, 80), min = Half(x, 82);
        int q = 16, iy = 0, @is = 0;
        for (int n = 0; n < 256; n += 128)
        {
            int shift = 0;
            for (int j = 0; j < 4; ++j)
            {
                byte sc = x[@is++];
                float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) y[iy++] = new(dl, (x[q + l] >> shift) & 3, ml);
                sc = x[@is++];
                dl = d * (sc & 0xF); ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) y[iy++] = new(dl, (x[q + l + 16] >> shift) & 3, ml);
                shift += 2;
            }
            q += 32;
        }
    }

    // block_q3_K { uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; half d; }
    private static void DecodeQ3_K(ReadOnlySpan<byte> x, Span<Element> y)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        float dAll = Half(x, 108);
        var aux = new uint[4];
        for (int k = 0; k < 3; k++)
            aux[k] = BinaryPrimitives.ReadUInt32LittleEndian(x[(96 + 4 * k)..]);
        uint tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        sbyte Scale(int s) => (sbyte)(aux[s / 4] >> (8 * (s % 4)));

        int q = 32, iy = 0, @is = 0;
        int m = 1;
        for (int n = 0; n < 256; n += 128)
        {
            int shift = 0;
            for (int j = 0; j < 4; ++j)
            {
                float dl = dAll * (Scale(@is++) - 32);
                for (int l = 0; l < 16; ++l)
                    y[iy++] = new(dl, ((x[q + l] >> shift) & 3) - ((x[l] & m) != 0 ? 0 : 4), 0f);
                dl = dAll * (Scale(@is++) - 32);
                for (int l = 0; l < 16; ++l)
                    y[iy++] = new(dl, ((x[q + l + 16] >> shift) & 3) - ((x[l + 16] & m) != 0 ? 0 : 4), 0f);
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }

    private static void GetScaleMinK4(int j, ReadOnlySpan<byte> q, out int d, out int m)
    {
        if (j < 4)
        {
            d = q[j] & 63; m = q[j + 4] & 63;
        }
        else
        {
            d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
        }
    }

    // block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; }
    private static void DecodeQ4_K(ReadOnlySpan<byte> x, Span<Element> y)
    {
        float d = Half(x, 0), min = Half(x, 2);
        ReadOnlySpan<byte> scales = x.Slice(4, 12);
        int q = 16, iy = 0, @is = 0;
        for (int j = 0; j < 256; j += 64)
        {
            GetScaleMinK4(@is + 0, scales, out int sc, out int mm);
            float d1 = d * sc, m1 = min * mm;
            GetScaleMinK4(@is + 1, scales, out sc, out mm);
            float d2 = d * sc, m2 = min * mm;
            for (int l = 0; l < 32; ++l) y[iy++] = new(d1, x[q + l] & 0xF, m1);
            for (int l = 0; l < 32; ++l) y[iy++] = new(d2, x[q + l] >> 4, m2);
            q += 32; @is += 2;
        }
    }

    // block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }
    private static void DecodeQ5_K(ReadOnlySpan<byte> x, Span<Element> y)
    {
        float d = Half(x, 0), min = Half(x, 2);
        ReadOnlySpan<byte> scales = x.Slice(4, 12);
        int ql = 48, qh = 16, iy = 0, @is = 0;
        int u1 = 1, u2 = 2;
        for (int j = 0; j < 256; j += 64)
        {
            GetScaleMinK4(@is + 0, scales, out int sc, out int mm);
            float d1 = d * sc, m1 = min * mm;
            GetScaleMinK4(@is + 1, scales, out sc, out mm);
            float d2 = d * sc, m2 = min * mm;
            for (int l = 0; l < 32; ++l) y[iy++] = new(d1, (x[ql + l] & 0xF) + ((x[qh + l] & u1) != 0 ? 16 : 0), m1);
            for (int l = 0; l < 32; ++l) y[iy++] = new(d2, (x[ql + l] >> 4) + ((x[qh + l] & u2) != 0 ? 16 : 0), m2);
            ql += 32; @is += 2;
            u1 <<= 2; u2 <<= 2;
        }
    }

    // block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }
    private static void DecodeQ6_K(ReadOnlySpan<byte> x, Span<Element> y)
    {
        float d = Half(x, 208);
        int ql = 0, qh = 128, sc = 192, iy = 0;
        for (int n = 0; n < 256; n += 128)
        {
            for (int l = 0; l < 32; ++l)
            {
                int @is = l / 16;
                int q1 = ((x[ql + l + 0] & 0xF) | (((x[qh + l] >> 0) & 3) << 4)) - 32;
                int q2 = ((x[ql + l + 32] & 0xF) | (((x[qh + l] >> 2) & 3) << 4)) - 32;
                int q3 = ((x[ql + l + 0] >> 4) | (((x[qh + l] >> 4) & 3) << 4)) - 32;
                int q4 = ((x[ql + l + 32] >> 4) | (((x[qh + l] >> 6) & 3) << 4)) - 32;
                y[iy + l + 0] = new(d * (sbyte)x[sc + @is + 0], q1, 0f);
                y[iy + l + 32] = new(d * (sbyte)x[sc + @is + 2], q2, 0f);
                y[iy + l + 64] = new(d * (sbyte)x[sc + @is + 4], q3, 0f);
                y[iy + l + 96] = new(d * (sbyte)x[sc + @is + 6], q4, 0f);
            }
            iy += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }

    /// <summary>
    /// Random blocks of the type: random bytes for quants and packed scales, the fp16 super-block scales
    /// replaced by finite values of either sign in [2^-10, 2^-2), or by exactly 1 with <paramref name="unitScale"/>.
    /// </summary>
    public static byte[] RandomBlocks(GgmlType type, int blocks, int seed, bool unitScale = false)
    {
        var rng = new Random(seed);
        int bytes = BlockBytes(type);
        var data = new byte[blocks * bytes];
        rng.NextBytes(data);
        int[] halves = type switch
        {
            GgmlType.Q2_K => [80, 82],
            GgmlType.Q3_K => [108],
            GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
            GgmlType.Q6_K => [208],
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        for (int b = 0; b < blocks; b++)
            foreach (int at in halves)
                BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(b * bytes + at), unitScale ? (ushort)0x3C00 : RandomHalf(rng));
        return data;
    }

    private static ushort RandomHalf(Random rng)
    {
        float d = MathF.Pow(2f, -10f + 8f * rng.NextSingle()) * (rng.Next(2) == 0 ? 1f : -1f);
        return BitConverter.HalfToUInt16Bits((Half)d);
    }

    /// <summary>Random valid Q8_K blocks: any int8 quants (-128 included), bsums that match them, d in [2^-10, 2^-2) or 1.</summary>
    public static byte[] RandomQ8K(int blocks, int seed, bool unitScale = false)
    {
        var rng = new Random(seed);
        var data = new byte[blocks * Q8_K.BlockBytes];
        for (int b = 0; b < blocks; b++)
        {
            Span<byte> block = data.AsSpan(b * Q8_K.BlockBytes, Q8_K.BlockBytes);
            rng.NextBytes(block.Slice(4, 256));
            BinaryPrimitives.WriteSingleLittleEndian(block, unitScale ? 1f : MathF.Pow(2f, -10f + 8f * rng.NextSingle()));
            WriteBsums(block);
        }
        return data;
    }

    public static void WriteBsums(Span<byte> block)
    {
        for (int j = 0; j < 16; j++)
        {
            int sum = 0;
            for (int i = 0; i < 16; i++)
                sum += (sbyte)block[4 + 16 * j + i];
            BinaryPrimitives.WriteInt16LittleEndian(block[(260 + 2 * j)..], (short)sum);
        }
    }

    /// <summary>Q8_K quants and their values d*q in double.</summary>
    public static (int[] Q, double[] Values) DecodeQ8K(ReadOnlySpan<byte> data)
    {
        int blocks = data.Length / Q8_K.BlockBytes;
        var q = new int[blocks * 256];
        var v = new double[blocks * 256];
        for (int b = 0; b < blocks; b++)
        {
            double d = BinaryPrimitives.ReadSingleLittleEndian(data[(b * Q8_K.BlockBytes)..]);
            for (int j = 0; j < 256; j++)
            {
                q[b * 256 + j] = (sbyte)data[b * Q8_K.BlockBytes + 4 + j];
                v[b * 256 + j] = d * q[b * 256 + j];
            }
        }
        return (q, v);
    }

    /// <summary>
    /// Asserts a K-quant dot against the exact value: within 1e-5 of Σ (|scale·q·x| + |offset·x|), since the kernels
    /// sum the scale and offset parts separately and the two may cancel.
    /// </summary>
    public static void AssertDot(Element[] w, double[] x, float actual, string path)
    {
        double exact = 0, magnitude = 0;
        for (int i = 0; i < w.Length; i++)
        {
            double a = (double)w[i].Scale * w[i].Q * x[i], m = (double)w[i].Offset * x[i];
            exact += a - m;
            magnitude += Math.Abs(a) + Math.Abs(m);
        }
        double tolerance = 1e-5 * magnitude + 1e-30;
        Assert.True(Math.Abs(actual - exact) <= tolerance,
            $"{path}: dot {actual} vs exact {exact} (tolerance {tolerance}, n={w.Length})");
    }
}
