using Kiln.Tensors;

namespace Kiln.Quantization;

/// <summary>
/// The scale of one symmetric block (Q4_0, Q5_0, Q8_0: value = d · code, codes in [−below, above]) that minimizes
/// the weighted rounding error Σ wⱼ (xⱼ − d·codeⱼ)², each code the nearest in range. The reference quantizers take
/// d = max/−below (the value of largest magnitude lands on the end code exactly); with one loud value in a block that
/// wastes levels on the rest, and under GPTQ the error of a heavily weighted column costs more than a light one's.
/// Candidates: the reference d and multiples of it (both signs, that is the loud value on either end code), each
/// refitted by weighted least squares on its codes; every d is taken as the half-precision value stored, so the
/// error computed is the one the block decodes to. The reference d is among the candidates, so the result is never
/// worse than it under the same weights.
/// </summary>
public static class SymmetricScaleSearch
{
    private const int Steps = 24;
    private const float Low = 0.70f, High = 1.10f;

    /// <summary>Returns a half-precision-exact d for <paramref name="x"/> under <paramref name="weights"/> (all ≥ 0).</summary>
    public static float Find(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int below, int above)
    {
        if (weights.Length != x.Length)
            throw new ArgumentException($"{weights.Length} weights for {x.Length} values", nameof(weights));
        if (below < 1 || above < 1)
            throw new ArgumentOutOfRangeException(nameof(below), "both code ranges must be at least 1");
        float amax = 0, max = 0;
        for (int j = 0; j < x.Length; j++)
        {
            if (amax < MathF.Abs(x[j]))
            {
                amax = MathF.Abs(x[j]);
                max = x[j];
            }
        }
        float reference = Half(max / -below);
        if (reference == 0)
            return reference;
        float best = reference;
        double bestError = Error(x, weights, reference, below, above);
        for (int sign = 0; sign < 2; sign++)
        {
            // sign 0: the loud value on code −below (the reference's end); sign 1: on code +above
            float end = sign == 0 ? max / -below : max / above;
            for (int s = 0; s <= Steps; s++)
            {
                float d = Half(end * (Low + (High - Low) * s / Steps));
                Consider(x, weights, d, below, above, ref best, ref bestError);
                Consider(x, weights, Refit(x, weights, d, below, above), below, above, ref best, ref bestError);
            }
        }
        return best;
    }

    /// <summary>Σ wⱼ (xⱼ − d·qⱼ)² with qⱼ the nearest code to xⱼ/d in [−below, above].</summary>
    public static double Error(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, float d, int below, int above)
    {
        double error = 0;
        for (int j = 0; j < x.Length; j++)
        {
            double e = x[j] - (double)d * Code(x[j], d, below, above);
            error += weights[j] * e * e;
        }
        return error;
    }

    /// <summary>The nearest code to x/d in [−below, above] (ties to even; 0 for d = 0).</summary>
    public static int Code(double x, float d, int below, int above) =>
        d == 0 ? 0 : Math.Clamp((int)Math.Round(x / d, MidpointRounding.ToEven), -below, above);

    private static void Consider(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, float d, int below, int above, ref float best, ref double bestError)
    {
        if (d == 0 || !float.IsFinite(d))
            return;
        double error = Error(x, weights, d, below, above);
        if (error < bestError)
        {
            bestError = error;
            best = d;
        }
    }

    /// <summary>The d minimizing the weighted error for the codes <paramref name="d"/> gives.</summary>
    private static float Refit(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, float d, int below, int above)
    {
        double xq = 0, qq = 0;
        for (int j = 0; j < x.Length; j++)
        {
            int q = Code(x[j], d, below, above);
            xq += weights[j] * x[j] * q;
            qq += weights[j] * q * q;
        }
        return qq > 0 ? Half((float)(xq / qq)) : 0;
    }

    private static float Half(float v) => HalfBits.ToSingle(HalfBits.FromSingle(v));
}
