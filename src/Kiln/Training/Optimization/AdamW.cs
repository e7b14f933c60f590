namespace Kiln.Training.Optimization;

/// <summary>
/// Adam with decoupled weight decay (Loshchilov &amp; Hutter), applied only to tensors of two or more dimensions
/// (matrices, embeddings): decaying norm gains and biases toward zero only hurts. The moments lie in the same flat
/// layout as the parameters, so a checkpoint writes them as two arrays.
/// </summary>
public sealed class AdamW
{
    private readonly ParameterSet<float> _parameters;
    private readonly AdamWOptions _options;
    private readonly (int Offset, int Length, bool Decays)[] _ranges;

    public AdamW(ParameterSet<float> parameters, AdamWOptions options)
    {
        _parameters = parameters;
        _options = options;
        FirstMoment = new float[parameters.Count];
        SecondMoment = new float[parameters.Count];
        _ranges = parameters.Tensors.Select(t => (t.Offset, t.Length, t.Decays)).ToArray();
    }

    public float[] FirstMoment { get; }
    public float[] SecondMoment { get; }

    /// <summary>Updates taken so far (the t of the bias corrections).</summary>
    public long UpdateCount { get; set; }

    /// <summary>One update from the gradients currently in the parameter set.</summary>
    public void Update(float learningRate)
    {
        UpdateCount++;
        var (correction1, correction2) = BiasCorrections(_options, UpdateCount);
        var p = _parameters.Values;
        var g = _parameters.Gradients;
        var m = FirstMoment;
        var v = SecondMoment;
        foreach (var (offset, length, decays) in _ranges)
        {
            float decay = decays ? _options.WeightDecay : 0f;
            UpdateRange(p.AsSpan(offset, length), g.AsSpan(offset, length), m.AsSpan(offset, length), v.AsSpan(offset, length),
                _options, learningRate, decay, correction1, correction2);
        }
    }

    /// <summary>Adam's 1 − β^t for both moments after <paramref name="updates"/> updates.</summary>
    internal static (float First, float Second) BiasCorrections(AdamWOptions options, long updates) =>
        ((float)(1 - Math.Pow(options.Beta1, updates)), (float)(1 - Math.Pow(options.Beta2, updates)));

    /// <summary>
    /// The update of one run of elements sharing a decay: shared with ZeRO's sharded optimizer, whose runs are a
    /// rank's slices of the tensors, so both give the same bits for the same inputs.
    /// </summary>
    internal static void UpdateRange(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, AdamWOptions options,
        float learningRate, float decay, float correction1, float correction2)
    {
        float b1 = options.Beta1, b2 = options.Beta2, eps = options.Epsilon;
        for (int i = 0; i < p.Length; i++)
        {
            float grad = g[i];
            m[i] = b1 * m[i] + (1 - b1) * grad;
            v[i] = b2 * v[i] + (1 - b2) * grad * grad;
            float mHat = m[i] / correction1;
            float vHat = v[i] / correction2;
            p[i] -= learningRate * (mHat / (MathF.Sqrt(vHat) + eps) + decay * p[i]);
        }
    }
}
