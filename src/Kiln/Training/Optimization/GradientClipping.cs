namespace Kiln.Training.Optimization;

/// <summary>Global-norm clipping: all gradients scaled together so their L2 norm is at most the limit.</summary>
public static class GradientClipping
{
    /// <summary>L2 norm, squares summed in double in index order (reproducible, and no float overflow before the NaN check).</summary>
    public static double Norm(ReadOnlySpan<float> gradients)
    {
        double sum = 0;
        foreach (float g in gradients)
            sum += (double)g * g;
        return Math.Sqrt(sum);
    }

    /// <summary>Scales in place when the norm exceeds <paramref name="maxNorm"/> (≤ 0 disables); returns the norm before clipping.</summary>
    public static double Clip(Span<float> gradients, float maxNorm)
    {
        double norm = Norm(gradients);
        if (maxNorm > 0 && norm > maxNorm && double.IsFinite(norm))
        {
            float scale = (float)(maxNorm / norm);
            foreach (ref float g in gradients)
                g *= scale;
        }
        return norm;
    }
}
