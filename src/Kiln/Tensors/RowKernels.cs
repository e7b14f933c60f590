using System.Runtime.InteropServices;

namespace Kiln.Tensors;

/// <summary>
/// Row kernels dispatched by ggml type, for the model code. Two dot paths: <see cref="Dot"/> against float
/// activations, and <see cref="DotQuantized"/> against activations converted once per matmul with
/// <see cref="QuantizeActivations"/> into <see cref="ActivationType"/> (llama.cpp's vec_dot_type scheme).
/// </summary>
public static class RowKernels
{
    /// <summary>True for the types these kernels compute with.</summary>
    public static bool Supports(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0
            or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
            or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>Expands one stored row to floats; <paramref name="dst"/> has one slot per element.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> row, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                RowArguments.CheckBlocks("F32", 1, sizeof(float), row.Length, dst.Length, nameof(row));
                MemoryMarshal.Cast<byte, float>(row).CopyTo(dst);
                break;
            case GgmlType.F16: F16.Dequantize(row, dst); break;
            case GgmlType.BF16: BF16.Dequantize(row, dst); break;
            case GgmlType.Q8_0: Q8_0.Dequantize(row, dst); break;
            case GgmlType.Q4_0: Q4_0.Dequantize(row, dst); break;
            case GgmlType.Q4_1: Q4_1.Dequantize(row, dst); break;
            case GgmlType.Q5_0: Q5_0.Dequantize(row, dst); break;
            case GgmlType.Q5_1: Q5_1.Dequantize(row, dst); break;
            case GgmlType.Q2_K: Q2_K.Dequantize(row, dst); break;
            case GgmlType.Q3_K: Q3_K.Dequantize(row, dst); break;
            case GgmlType.Q4_K: Q4_K.Dequantize(row, dst); break;
            case GgmlType.Q5_K: Q5_K.Dequantize(row, dst); break;
            case GgmlType.Q6_K: Q6_K.Dequantize(row, dst); break;
            default: throw Unsupported(type);
        }
    }

    /// <summary>Stored row · float activations.</summary>
    public static float Dot(GgmlType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x) => type switch
    {
        GgmlType.F32 => F32.Dot(AsFloats(row, x.Length, nameof(row)), x),
        GgmlType.F16 => F16.Dot(row, x),
        GgmlType.BF16 => BF16.Dot(row, x),
        GgmlType.Q8_0 => Q8_0.Dot(row, x),
        GgmlType.Q4_0 => Q4_0.Dot(row, x),
        GgmlType.Q4_1 => Q4_1.Dot(row, x),
        GgmlType.Q5_0 => Q5_0.Dot(row, x),
        GgmlType.Q5_1 => Q5_1.Dot(row, x),
        GgmlType.Q2_K => Q2_K.Dot(row, x),
        GgmlType.Q3_K => Q3_K.Dot(row, x),
        GgmlType.Q4_K => Q4_K.Dot(row, x),
        GgmlType.Q5_K => Q5_K.Dot(row, x),
        GgmlType.Q6_K => Q6_K.Dot(row, x),
        _ => throw Unsupported(type),
    };

    /// <summary>
    /// What llama.cpp's CPU backend converts activations to before dotting them with weights of this type:
    /// F32→F32, BF16→BF16, Q8_0/Q4_0/Q5_0→Q8_0, Q4_1/Q5_1→Q8_1, the K-quants (256-element super-blocks)→Q8_K;
    /// for F16 llama.cpp converts to F16, and Kiln keeps those F16-rounded values as F32 (the same products, one
    /// conversion fewer per dot).
    /// </summary>
    public static GgmlType ActivationType(GgmlType weightType) => weightType switch
    {
        GgmlType.F32 => GgmlType.F32,
        GgmlType.F16 => GgmlType.F32, // F16-rounded floats, see QuantizeActivations
        GgmlType.BF16 => GgmlType.BF16,
        GgmlType.Q8_0 or GgmlType.Q4_0 => GgmlType.Q8_0,
        GgmlType.Q5_0 => GgmlType.Q8_0,
        GgmlType.Q4_1 or GgmlType.Q5_1 => GgmlType.Q8_1,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => GgmlType.Q8_K,
        _ => throw Unsupported(weightType),
    };

    /// <summary>Bytes that <see cref="QuantizeActivations"/> writes for <paramref name="n"/> activations.</summary>
    public static long ActivationBytes(GgmlType weightType, int n) =>
        GgmlTypeTraits.RowBytes(ActivationType(weightType), n);

    /// <summary>Converts float activations to <see cref="ActivationType"/> of <paramref name="weightType"/>.</summary>
    public static void QuantizeActivations(GgmlType weightType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        switch (ActivationType(weightType))
        {
            case GgmlType.F32 when weightType == GgmlType.F16:
                // llama.cpp converts activations to F16 for F16 weights; rounding them once and keeping floats
                // gives the same exact products without a conversion in every row's dot.
                RowArguments.CheckBlocks("F32", 1, sizeof(float), dst.Length, x.Length, nameof(dst));
                F16.RoundActivations(x, MemoryMarshal.Cast<byte, float>(dst));
                break;
            case GgmlType.F32:
                RowArguments.CheckBlocks("F32", 1, sizeof(float), dst.Length, x.Length, nameof(dst));
                MemoryMarshal.AsBytes(x).CopyTo(dst);
                break;
            case GgmlType.BF16: BF16.Quantize(x, dst); break;
            case GgmlType.Q8_1: Q8_1.Quantize(x, dst); break;
            case GgmlType.Q8_K: Q8_K.Quantize(x, dst); break;
            default: Q8_0.QuantizeActivations(x, dst); break;
        }
    }

    /// <summary>Stored row · activations already converted by <see cref="QuantizeActivations"/> (the matmul path).</summary>
    public static float DotQuantized(GgmlType weightType, ReadOnlySpan<byte> row, ReadOnlySpan<byte> xq)
    {
        switch (weightType)
        {
            case GgmlType.F32:
                if (row.Length % sizeof(float) != 0)
                    throw new ArgumentException($"an F32 row is 4 bytes per element; {row.Length} bytes is not", nameof(row));
                RowArguments.CheckSameLength(row.Length, xq.Length, nameof(xq));
                return F32.Dot(MemoryMarshal.Cast<byte, float>(row), MemoryMarshal.Cast<byte, float>(xq));
            case GgmlType.F16:
                RowArguments.CheckSameLength(row.Length * 2, xq.Length, nameof(xq));
                return F16.Dot(row, MemoryMarshal.Cast<byte, float>(xq));
            case GgmlType.BF16: return BF16.DotBF16(row, xq);
            case GgmlType.Q8_0: return Q8_0.DotQ8(row, xq);
            case GgmlType.Q4_0: return Q4_0.DotQ8(row, xq);
            case GgmlType.Q4_1: return Q4_1.DotQ8(row, xq);
            case GgmlType.Q5_0: return Q5_0.DotQ8(row, xq);
            case GgmlType.Q5_1: return Q5_1.DotQ8(row, xq);
            case GgmlType.Q2_K: return Q2_K.DotQ8K(row, xq);
            case GgmlType.Q3_K: return Q3_K.DotQ8K(row, xq);
            case GgmlType.Q4_K: return Q4_K.DotQ8K(row, xq);
            case GgmlType.Q5_K: return Q5_K.DotQ8K(row, xq);
            case GgmlType.Q6_K: return Q6_K.DotQ8K(row, xq);
            default: throw Unsupported(weightType);
        }
    }

    private static ReadOnlySpan<float> AsFloats(ReadOnlySpan<byte> row, int elements, string name)
    {
        RowArguments.CheckBlocks("F32", 1, sizeof(float), row.Length, elements, name);
        return MemoryMarshal.Cast<byte, float>(row);
    }

    private static NotSupportedException Unsupported(GgmlType type) =>
        new($"no compute kernel for ggml type {GgmlTypeTraits.Name(type)}; supported: {string.Join(", ", SupportedNames())}");

    private static IEnumerable<string> SupportedNames() =>
        Enum.GetValues<GgmlType>().Where(Supports).Select(GgmlTypeTraits.Name);
}
