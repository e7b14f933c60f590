using Kiln.Tensors;

namespace Kiln.Quantization;

/// <summary>Float rows to any type the quantizer writes, through each type's reference quantizer.</summary>
public static class RowQuantizer
{
    public static bool Supports(GgmlType type) => type is GgmlType.F32 or GgmlType.F16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>
    /// With <paramref name="importance"/> (an imatrix's per-column weights for this row's tensor) the types llama.cpp
    /// weighs (Q4_0, Q4_1, Q5_0, Q5_1, Q2_K … Q6_K) use its *_impl quantizers; Q8_0 ignores it, as ggml does.
    /// </summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty)
        {
            Quantize(type, src, dst);
            return;
        }
        switch (type)
        {
            case GgmlType.Q4_0: Q4_0.Quantize(src, dst, importance); break;
            case GgmlType.Q4_1: Q4_1.Quantize(src, dst, importance); break;
            case GgmlType.Q5_0: Q5_0.Quantize(src, dst, importance); break;
            case GgmlType.Q5_1: Q5_1.Quantize(src, dst, importance); break;
            case GgmlType.Q2_K: Q2_K.Quantize(src, dst, importance); break;
            case GgmlType.Q3_K: Q3_K.Quantize(src, dst, importance); break;
            case GgmlType.Q4_K: Q4_K.Quantize(src, dst, importance); break;
            case GgmlType.Q5_K: Q5_K.Quantize(src, dst, importance); break;
            case GgmlType.Q6_K: Q6_K.Quantize(src, dst, importance); break;
            default: Quantize(type, src, dst); break;
        }
    }

    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(src).CopyTo(dst);
                break;
            case GgmlType.F16: F16.Quantize(src, dst); break;
            case GgmlType.Q4_0: Q4_0.Quantize(src, dst); break;
            case GgmlType.Q4_1: Q4_1.Quantize(src, dst); break;
            case GgmlType.Q5_0: Q5_0.Quantize(src, dst); break;
            case GgmlType.Q5_1: Q5_1.Quantize(src, dst); break;
            case GgmlType.Q8_0: Q8_0.Quantize(src, dst); break;
            case GgmlType.Q2_K: Q2_K.Quantize(src, dst); break;
            case GgmlType.Q3_K: Q3_K.Quantize(src, dst); break;
            case GgmlType.Q4_K: Q4_K.Quantize(src, dst); break;
            case GgmlType.Q5_K: Q5_K.Quantize(src, dst); break;
            case GgmlType.Q6_K: Q6_K.Quantize(src, dst); break;
            default:
                throw new NotSupportedException($"no quantizer for {GgmlTypeTraits.Name(type)}");
        }
    }
}
