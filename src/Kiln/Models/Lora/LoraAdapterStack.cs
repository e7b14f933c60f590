using System.Numerics.Tensors;
using Kiln.Models.Llama;

namespace Kiln.Models.Lora;

/// <summary>
/// The adapters attached to one inference context, indexed by (block, target): after the base product y = W·x the
/// context calls <see cref="Apply"/>, which adds scale·B·(A·x) of every adapter adapting that matrix. The rank is
/// small, so the two thin products cost a few percent of the base one; matrices without adapters cost a lookup.
/// </summary>
public sealed class LoraAdapterStack
{
    private readonly (LoraWeight Weight, float Scale)[][] _byMatrix;
    private readonly float[] _u;

    public LoraAdapterStack(LlamaConfig config, IReadOnlyList<LoraAdapter> adapters, string modelName)
    {
        var lists = new List<(LoraWeight, float)>[config.BlockCount * LoraTargetNames.Count];
        int maxRank = 0;
        foreach (var adapter in adapters)
        {
            adapter.Validate(config, modelName);
            foreach (var w in adapter.Weights)
            {
                (lists[w.Layer * LoraTargetNames.Count + (int)w.Target] ??= []).Add((w, adapter.ScaleOf(w)));
                maxRank = Math.Max(maxRank, w.Rank);
            }
        }
        _byMatrix = lists.Select(l => l is null ? [] : l.ToArray()).ToArray();
        _u = new float[maxRank];
        Adapters = adapters;
    }

    public IReadOnlyList<LoraAdapter> Adapters { get; }

    /// <summary>y[n, out] += Σ scale·B·(A·x) for x[n, in], over the adapters of <paramref name="target"/> in block <paramref name="layer"/>.</summary>
    public void Apply(int layer, LoraTarget target, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        foreach (var (w, scale) in _byMatrix[layer * LoraTargetNames.Count + (int)target])
        {
            int inDim = w.InDim, outDim = w.OutDim, r = w.Rank;
            var u = _u.AsSpan(0, r);
            for (int t = 0; t < n; t++)
            {
                var xt = x.Slice(t * inDim, inDim);
                for (int q = 0; q < r; q++)
                    u[q] = scale * TensorPrimitives.Dot(xt, w.A.AsSpan(q * inDim, inDim));
                var yt = y.Slice(t * outDim, outDim);
                for (int j = 0; j < outDim; j++)
                    yt[j] += TensorPrimitives.Dot(u, w.B.AsSpan(j * r, r));
            }
        }
    }
}
