namespace Kiln.Tests.TestSupport;

/// <summary>
/// log softmax written out plainly in double, one entry at a time: the independent reference that Kiln's
/// log-probabilities (and llama.cpp's, read from ../shared/refs) are compared against.
/// </summary>
public static class ReferenceLogSoftmax
{
    public static double[] Of(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (float l in logits)
            max = Math.Max(max, l);
        double sum = 0;
        foreach (float l in logits)
            sum += Math.Exp(l - max);
        double logZ = max + Math.Log(sum);
        var result = new double[logits.Length];
        for (int i = 0; i < logits.Length; i++)
            result[i] = logits[i] - logZ;
        return result;
    }
}
