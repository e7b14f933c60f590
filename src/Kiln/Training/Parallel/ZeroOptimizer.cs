using Kiln.Training.Optimization;

namespace Kiln.Training.Parallel;

/// <summary>
/// AdamW over one rank's shard (ZeRO stages 1–3): the two moments are held for the owned S elements only, and each
/// owned element gets exactly the update <see cref="AdamW"/> gives it, weight decay decided by its tensor.
/// </summary>
public sealed class ZeroOptimizer
{
    private readonly ZeroPartition _partition;
    private readonly AdamWOptions _options;

    public ZeroOptimizer(ZeroPartition partition, AdamWOptions options)
    {
        _partition = partition;
        _options = options;
        FirstMoment = new float[partition.ShardLength];
        SecondMoment = new float[partition.ShardLength];
    }

    public float[] FirstMoment { get; }
    public float[] SecondMoment { get; }
    public long UpdateCount { get; set; }

    /// <summary>
    /// Updates the owned elements of <paramref name="values"/> from <paramref name="gradients"/>; each is either the
    /// full flat buffer (indexed by flat position) or the rank's shard (indexed by shard position).
    /// </summary>
    public void Update(float learningRate, float[] values, bool valuesSharded, float[] gradients, bool gradientsSharded)
    {
        UpdateCount++;
        var (correction1, correction2) = AdamW.BiasCorrections(_options, UpdateCount);
        foreach (var s in _partition.Segments)
        {
            var p = values.AsSpan(valuesSharded ? s.ShardOffset : s.GlobalOffset, s.Length);
            var g = gradients.AsSpan(gradientsSharded ? s.ShardOffset : s.GlobalOffset, s.Length);
            AdamW.UpdateRange(p, g, FirstMoment.AsSpan(s.ShardOffset, s.Length), SecondMoment.AsSpan(s.ShardOffset, s.Length),
                _options, learningRate, s.Decays ? _options.WeightDecay : 0f, correction1, correction2);
        }
    }
}
