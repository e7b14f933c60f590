namespace Kiln.Training.Optimization;

/// <summary>Global-norm clipping: all gradients scaled together so their L2 norm is at most the limit.</summary>
public static class GradientClipping
{
    /// <summary>L2 norm, squares summed in double in index order (reproducible, and no float overflow before the NaN check).</summary>
    public static double Norm(ReadOnlySpan<float> gradients) => Math.Sqrt(SumOfSquares(gradients, 0));

    /// <summary>
    /// <paramref name="running"/> plus the squares in index order: a model split into pieces continues one running sum
    /// piece after piece and gets the bits of <see cref="Norm"/> over the whole.
    /// </summary>
    public static double SumOfSquares(ReadOnlySpan<float> gradients, double running)
    {
        foreach (float g in gradients)
            running += (double)g * g;
        return running;
    }

    /// <summary>Scales in place when the norm exceeds <paramref name="maxNorm"/> (≤ 0 disables); returns the norm before clipping.</summary>
    public static double Clip(Span<float> gradients, float maxNorm)
    {
        double norm = Norm(gradients);
        ClipTo(gradients, norm, maxNorm);
        return norm;
    }

    /// <summary>As <see cref="Clip"/> with the norm already known (summed over several pieces of a model).</summary>
    public static void ClipTo(Span<float> gradients, double norm, float maxNorm)
    {
        if (maxNorm > 0 && norm > maxNorm && double.IsFinite(norm))
        {
            float scale = (float)(maxNorm / norm);
            foreach (ref float g in gradients)
                g *= scale;
        }
    }
}
