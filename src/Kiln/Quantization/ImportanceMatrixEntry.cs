namespace Kiln.Quantization;

/// <summary>
/// One weight's statistics as llama.cpp's imatrix.dat stores them: <see cref="Values"/>[j] is the mean of
/// x_j² over the input rows seen, times <see cref="Calls"/> (the number of products observed), so that
/// llama-quantize's "divide by ncall" gives the mean squared activation of input column j.
/// </summary>
public sealed record ImportanceMatrixEntry(int Calls, float[] Values)
{
    /// <summary>Per-column importance the quantizers weigh the rounding error with: the mean squared activation.</summary>
    public float[] ColumnWeights()
    {
        var w = new float[Values.Length];
        for (int j = 0; j < w.Length; j++)
            w[j] = Calls > 0 ? Values[j] / Calls : Values[j];
        return w;
    }
}
