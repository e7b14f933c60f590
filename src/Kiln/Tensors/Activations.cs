using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>Element-wise activation functions over one row, rounded as llama.cpp's CPU backend rounds them.</summary>
public static class Activations
{
    /// <summary>
    /// SiLU, x / (1 + e^−x), in place (ggml_vec_silu_f32): whole groups of eight from the start of the row use
    /// <see cref="PolynomialExp"/>, the last n mod 8 values the C library's expf.
    /// </summary>
    public static void Silu(Span<float> x)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            SiluScalar(x);
            return;
        }
        int i = 0;
        ref float p = ref MemoryMarshal.GetReference(x);
        Vector256<float> one = Vector256.Create(1f);
        for (; i + 8 <= x.Length; i += 8)
        {
            Vector256<float> v = Vector256.LoadUnsafe(ref p, (nuint)i);
            (v / (one + PolynomialExp.Exp(Vector256<float>.Zero - v))).StoreUnsafe(ref p, (nuint)i);
        }
        SiluTail(x, i);
    }

    /// <summary>Reference for <see cref="Silu"/>, one value at a time; identical bits.</summary>
    public static void SiluScalar(Span<float> x)
    {
        int groups = x.Length - x.Length % 8;
        for (int i = 0; i < groups; i++)
            x[i] /= 1f + PolynomialExp.ExpScalar(0f - x[i]);
        SiluTail(x, groups);
    }

    private static void SiluTail(Span<float> x, int start)
    {
        for (int i = start; i < x.Length; i++)
            x[i] /= 1f + MathF.Exp(-x[i]);
    }
}
