using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;

namespace Kiln.Tensors;

/// <summary>Element-wise activation functions over one row (SiLU rounded as llama.cpp's CPU backend rounds it).</summary>
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

    // GELU's tanh argument u = √(2/π)(x + 0.044715x³) enters only as e^(−2u): these are 2√(2/π) and 2√(2/π)·0.044715.
    private const float GeluLinear = 1.5957691216057308f;
    private const float GeluCubic = 0.071354816f;

    /// <summary>
    /// GELU, tanh approximation (GPT-2's, and ggml_gelu's function), in place: ½x(1 + tanh u) with
    /// u = √(2/π)(x + 0.044715x³), evaluated as x / (1 + e^(−2u)) (½(1 + tanh u) is the logistic of 2u) with
    /// <see cref="PolynomialExp"/>, so one exp per value and no tanh. Large negative x give −0, large positive x give x.
    /// llama.cpp's CPU backend instead looks the value up in a table indexed by x rounded to F16 (GGML_GELU_FP16),
    /// which differs from the exact function by up to about 1e-3 relative; Kiln keeps the function the trainer used.
    /// </summary>
    public static void Gelu(Span<float> x)
    {
        if (CpuPaths.CanAvx2)
            GeluAvx2(x);
        else
            GeluScalar(x);
    }

    /// <summary>Reference for <see cref="Gelu"/>, one value at a time; identical bits.</summary>
    public static void GeluScalar(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++)
            x[i] = GeluOne(x[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float GeluOne(float v)
    {
        float inner = GeluLinear + GeluCubic * (v * v);
        return v / (1f + PolynomialExp.ExpScalar(0f - v * inner));
    }

    internal static void GeluAvx2(Span<float> x)
    {
        int i = 0;
        ref float p = ref MemoryMarshal.GetReference(x);
        Vector256<float> one = Vector256.Create(1f), linear = Vector256.Create(GeluLinear), cubic = Vector256.Create(GeluCubic);
        for (; i + 8 <= x.Length; i += 8)
        {
            Vector256<float> v = Vector256.LoadUnsafe(ref p, (nuint)i);
            Vector256<float> inner = linear + cubic * (v * v);
            (v / (one + PolynomialExp.Exp(Vector256<float>.Zero - v * inner))).StoreUnsafe(ref p, (nuint)i);
        }
        for (; i < x.Length; i++)
            x[i] = GeluOne(x[i]);
    }
}
