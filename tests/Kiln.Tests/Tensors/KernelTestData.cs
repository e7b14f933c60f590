using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>Deterministic inputs and independent references for the kernel tests.</summary>
internal static class KernelTestData
{
    public static bool Avx2 => CpuPaths.CanAvx2;
    public static bool Avx512 => CpuPaths.CanAvx512;

    /// <summary>Awkward float-row lengths: empty, below, at and around every vector width, and long.</summary>
    public static readonly int[] Lengths = [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 95, 96, 257, 4096 + 32 + 5];

    /// <summary>Block counts for the 32-element block types.</summary>
    public static readonly int[] BlockCounts = [1, 2, 3, 7, 64, 129];

    public static TheoryData<int> LengthData() => new(Lengths);
    public static TheoryData<int> BlockCountData() => new(BlockCounts);

    /// <summary>Roughly normal values (sum of uniforms) with a per-row scale, like weights and activations.</summary>
    public static float[] Floats(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
            x[i] = (rng.NextSingle() + rng.NextSingle() + rng.NextSingle() - 1.5f) * scale;
        return x;
    }

    /// <summary>Random Q8_0 blocks: scale in [2^-10, 2^-2) (or exactly 1), quants over the full int8 range.</summary>
    public static byte[] Q8Blocks(int blocks, int seed, bool unitScale = false)
    {
        var rng = new Random(seed);
        var data = new byte[blocks * 34];
        rng.NextBytes(data);
        for (int b = 0; b < blocks; b++)
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(b * 34), unitScale ? (ushort)0x3C00 : RandomScale(rng));
        return data;
    }

    /// <summary>Random Q4_0 blocks (any nibbles), with random or unit scales.</summary>
    public static byte[] Q4Blocks(int blocks, int seed, bool unitScale = false)
    {
        var rng = new Random(seed);
        var data = new byte[blocks * 18];
        rng.NextBytes(data);
        for (int b = 0; b < blocks; b++)
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(b * 18), unitScale ? (ushort)0x3C00 : RandomScale(rng));
        return data;
    }

    private static ushort RandomScale(Random rng)
    {
        float d = MathF.Pow(2f, -10f + 8f * rng.NextSingle()) * (rng.Next(2) == 0 ? 1f : -1f);
        return BitConverter.HalfToUInt16Bits((Half)d);
    }

    /// <summary>fp16 decoded by .NET's own Half type: independent of the kernels' bit tricks.</summary>
    public static float HalfAt(ReadOnlySpan<byte> bytes) =>
        (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes));

    /// <summary>Q8_0 decoded straight from the block layout, in double.</summary>
    public static double[] DecodeQ8(ReadOnlySpan<byte> data)
    {
        var v = new double[data.Length / 34 * 32];
        for (int b = 0; b < data.Length / 34; b++)
        {
            double d = HalfAt(data[(b * 34)..]);
            for (int j = 0; j < 32; j++)
                v[b * 32 + j] = d * (sbyte)data[b * 34 + 2 + j];
        }
        return v;
    }

    /// <summary>Q4_0 decoded straight from the block layout, in double.</summary>
    public static double[] DecodeQ4(ReadOnlySpan<byte> data)
    {
        var v = new double[data.Length / 18 * 32];
        for (int b = 0; b < data.Length / 18; b++)
        {
            double d = HalfAt(data[(b * 18)..]);
            for (int j = 0; j < 16; j++)
            {
                byte q = data[b * 18 + 2 + j];
                v[b * 32 + j] = d * ((q & 15) - 8);
                v[b * 32 + 16 + j] = d * ((q >> 4) - 8);
            }
        }
        return v;
    }

    public static double[] Widen(ReadOnlySpan<float> x)
    {
        var v = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
            v[i] = x[i];
        return v;
    }

    /// <summary>
    /// Asserts a float dot is within a relative 1e-5 of sum |a_i b_i| from the exact value: summation order
    /// changes rounding, never more than that at these lengths.
    /// </summary>
    public static void AssertDot(double[] a, double[] b, float actual, string path)
    {
        double exact = 0, magnitude = 0;
        for (int i = 0; i < a.Length; i++)
        {
            exact += a[i] * b[i];
            magnitude += Math.Abs(a[i] * b[i]);
        }
        double tolerance = 1e-5 * magnitude + 1e-30;
        Assert.True(Math.Abs(actual - exact) <= tolerance,
            $"{path}: dot {actual} vs exact {exact} (tolerance {tolerance}, n={a.Length})");
    }
}
