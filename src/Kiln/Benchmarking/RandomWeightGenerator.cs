using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Kiln.Inference.Sampling;
using Kiln.Tensors;

namespace Kiln.Benchmarking;

/// <summary>
/// Fills tensors with random weights of a stored type, fast enough for multi-gigabyte models. Speed
/// measurements need no trained values, only well-formed ones: float types get random values of magnitude
/// 2^-7..2^-5 (built directly in their bit patterns), block types get random quant bytes with their fp16
/// scale fields overwritten by normal, small halves, so every weight dequantizes to a modest finite number.
/// </summary>
public sealed class RandomWeightGenerator(ulong seed)
{
    private Xoshiro256StarStar _rng = new(seed);

    /// <summary>Where each block type keeps its fp16 scale (and min) fields, and the scale's binary exponent.</summary>
    private static (int[] HalfOffsets, int Exponent)? BlockRecipe(GgmlType type) => type switch
    {
        // 32-element blocks: d·q with |q| ≤ 128 at most, so d of 2^-10 keeps weights under 0.25.
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 or GgmlType.IQ4_NL => ([0], -10),
        GgmlType.Q4_1 or GgmlType.Q5_1 => ([0, 2], -10),
        // 256-element super-blocks multiply d by a 6- or 8-bit sub-block scale, hence a smaller d.
        GgmlType.Q4_K or GgmlType.Q5_K => ([0, 2], -13),
        GgmlType.Q2_K => ([80, 82], -13),
        GgmlType.Q3_K => ([108], -13),
        GgmlType.Q6_K => ([208], -13),
        _ => null,
    };

    /// <summary>True for the types this generator can produce.</summary>
    public static bool CanGenerate(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 || BlockRecipe(type) is not null;

    /// <summary>Fills <paramref name="destination"/>, a whole number of <paramref name="type"/> blocks.</summary>
    public void Fill(GgmlType type, Span<byte> destination)
    {
        int blockBytes = GgmlTypeTraits.BlockBytes(type);
        if (destination.Length % blockBytes != 0)
            throw new ArgumentException($"{destination.Length} bytes is not a whole number of {GgmlTypeTraits.Name(type)} blocks", nameof(destination));
        switch (type)
        {
            // Sign, the lowest exponent bit and the mantissa stay random; the other exponent bits are fixed so
            // the exponent is one of two values: magnitudes in [2^-7, 2^-5).
            case GgmlType.F32: FillMasked(destination, 0x80FF_FFFF_80FF_FFFFUL, (120UL << 23) * 0x1_0000_0001UL); break;
            case GgmlType.F16: FillMasked(destination, 0x87FF_87FF_87FF_87FFUL, 0x2000_2000_2000_2000UL); break;
            case GgmlType.BF16: FillMasked(destination, 0x80FF_80FF_80FF_80FFUL, 0x3C00_3C00_3C00_3C00UL); break;
            default:
                var (halves, exponent) = BlockRecipe(type)
                    ?? throw new NotSupportedException($"no random-weight recipe for ggml type {GgmlTypeTraits.Name(type)}");
                FillMasked(destination, ulong.MaxValue, 0);
                for (int b = 0; b < destination.Length; b += blockBytes)
                {
                    foreach (int offset in halves)
                        BinaryPrimitives.WriteUInt16LittleEndian(destination[(b + offset)..], RandomHalf(exponent));
                }
                break;
        }
    }

    /// <summary>Uniform floats in center ± spread (norm weights, biases).</summary>
    public float[] Floats(int n, float center, float spread)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++)
            values[i] = center + (float)(_rng.NextDouble() * 2 - 1) * spread;
        return values;
    }

    /// <summary>A normal fp16 with random sign and mantissa and magnitude in [2^exponent, 2^(exponent+1)).</summary>
    private ushort RandomHalf(int exponent)
    {
        ulong r = _rng.NextUInt64();
        return (ushort)((r & 0x83FF) | (uint)((exponent + 15) << 10));
    }

    private void FillMasked(Span<byte> destination, ulong keep, ulong set)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(destination);
        for (int i = 0; i < words.Length; i++)
            words[i] = (_rng.NextUInt64() & keep) | set;
        var tail = destination[(words.Length * sizeof(ulong))..];
        if (!tail.IsEmpty)
        {
            Span<byte> last = stackalloc byte[sizeof(ulong)];
            BinaryPrimitives.WriteUInt64LittleEndian(last, (_rng.NextUInt64() & keep) | set);
            last[..tail.Length].CopyTo(tail);
        }
    }
}
