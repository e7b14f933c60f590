using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>
/// LayerNorm of one row with gain and bias (GPT-2's ln_1, ln_2, ln_f; ggml_norm then ggml_mul, ggml_add):
/// y = (x − mean)·(1/√(var + ε))·w + b with the biased variance. Both sums (of x, then of (x − mean)²) run in
/// eight float lanes over whole groups of eight (element i into lane i mod 8), the lanes added as
/// <see cref="F32.SumLanesHalving(Vector256{float})"/>, then the remaining elements one at a time; every path keeps
/// that order, so all give the same bits.
/// </summary>
public static class LayerNorm
{
    private const int Lanes = 8;

    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float epsilon, Span<float> y)
    {
        CheckLengths(x, weight, bias, y);
        if (CpuPaths.CanAvx2)
            ApplyAvx2(x, weight, bias, epsilon, y);
        else
            ApplyScalar(x, weight, bias, epsilon, y);
    }

    /// <summary>Reference for <see cref="Apply"/>: the same operations in the same order, one lane at a time.</summary>
    public static void ApplyScalar(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float epsilon, Span<float> y)
    {
        CheckLengths(x, weight, bias, y);
        int n = x.Length, blocked = n - n % Lanes;
        Span<float> acc = stackalloc float[Lanes];
        acc.Clear();
        for (int i = 0; i < blocked; i++)
            acc[i % Lanes] += x[i];
        float sum = F32.SumLanesHalving(acc);
        for (int i = blocked; i < n; i++)
            sum += x[i];
        float mean = sum / n;

        acc.Clear();
        for (int i = 0; i < blocked; i++)
        {
            float d = x[i] - mean;
            acc[i % Lanes] += d * d;
        }
        float squares = F32.SumLanesHalving(acc);
        for (int i = blocked; i < n; i++)
        {
            float d = x[i] - mean;
            squares += d * d;
        }
        float scale = Scale(squares, n, epsilon);
        for (int i = 0; i < n; i++)
            y[i] = (x[i] - mean) * scale * weight[i] + bias[i];
    }

    internal static void ApplyAvx2(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float epsilon, Span<float> y)
    {
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float pw = ref MemoryMarshal.GetReference(weight);
        ref float pb = ref MemoryMarshal.GetReference(bias);
        ref float py = ref MemoryMarshal.GetReference(y);
        int n = x.Length, blocked = n - n % Lanes;

        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < blocked; i += Lanes)
            acc += Vector256.LoadUnsafe(ref px, (nuint)i);
        float sum = F32.SumLanesHalving(acc);
        for (int i = blocked; i < n; i++)
            sum += Unsafe.Add(ref px, i);
        float mean = sum / n;

        Vector256<float> m = Vector256.Create(mean);
        acc = Vector256<float>.Zero;
        for (int i = 0; i < blocked; i += Lanes)
        {
            Vector256<float> d = Vector256.LoadUnsafe(ref px, (nuint)i) - m;
            acc += d * d;
        }
        float squares = F32.SumLanesHalving(acc);
        for (int i = blocked; i < n; i++)
        {
            float d = Unsafe.Add(ref px, i) - mean;
            squares += d * d;
        }
        float scale = Scale(squares, n, epsilon);

        Vector256<float> s = Vector256.Create(scale);
        for (int i = 0; i < blocked; i += Lanes)
        {
            Vector256<float> v = (Vector256.LoadUnsafe(ref px, (nuint)i) - m) * s * Vector256.LoadUnsafe(ref pw, (nuint)i)
                + Vector256.LoadUnsafe(ref pb, (nuint)i);
            v.StoreUnsafe(ref py, (nuint)i);
        }
        for (int i = blocked; i < n; i++)
            Unsafe.Add(ref py, i) = (Unsafe.Add(ref px, i) - mean) * scale * Unsafe.Add(ref pw, i) + Unsafe.Add(ref pb, i);
    }

    private static float Scale(float squares, int n, float epsilon) => 1f / MathF.Sqrt(squares / n + epsilon);

    private static void CheckLengths(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> y)
    {
        if (x.IsEmpty)
            throw new ArgumentException("LayerNorm needs a non-empty row", nameof(x));
        RowArguments.CheckSameLength(x.Length, weight.Length, nameof(weight));
        RowArguments.CheckSameLength(x.Length, bias.Length, nameof(bias));
        RowArguments.CheckSameLength(x.Length, y.Length, nameof(y));
    }
}
