using Kiln.Distributed;

namespace Kiln.Training.Parallel;

/// <summary>
/// One rank's membership of a tensor-parallel group (Megatron-LM): the split (<see cref="Layout"/>), the group's
/// communicator, and the two operators the blocks call. Per sub-layer (attention, MLP) there is exactly one
/// all-reduce forward and one backward:
/// <list type="bullet">
/// <item>g, after the row-parallel projection (attention output, down / c_proj): forward sums the ranks' partial
/// products (<see cref="SumPartialOutputs{T}"/>); backward is the identity, every rank already holding the whole
/// d(output).</item>
/// <item>f, before the column-parallel projection (QKV, gate/up / c_fc): forward is the identity, every rank
/// holding the whole normed input; backward sums the ranks' partial d(input) (<see cref="SumInputGradients{T}"/>).</item>
/// </list>
/// <para>
/// Why replicated parameters (norms, embeddings, output head, row-parallel biases) stay identical on every rank
/// without being communicated: the all-reduce hands every rank the same bits (LocalCommunicator adds in rank order;
/// MPI implementations reduce each element once and distribute it, and float addition is commutative, so pairwise
/// exchanges agree too). Everything outside the split sub-layers therefore runs on identical inputs on every rank:
/// the residual stream after g, the data (every rank of the group reads the same batch), and d(stream) after f. So the
/// replicated gradients come out bit-identical, the gradient norm is the same on every rank (<see cref="ClipGradients"/>),
/// and AdamW, element-wise, makes the same update. A test checks the replicas bit for bit after training.
/// </para>
/// </summary>
public sealed class TensorParallel
{
    public TensorParallel(Communicator group, TrainingConfig config)
    {
        Group = group;
        Layout = new TensorParallelLayout(config, group.Size);
    }

    public Communicator Group { get; }
    public TensorParallelLayout Layout { get; }
    public int Rank => Group.Rank;
    public int Ranks => Group.Size;

    /// <summary>All-reduce calls made by the blocks so far (the gradient norm's one is not counted).</summary>
    public long AllReduces { get; private set; }

    /// <summary>Elements those all-reduces carried (each rank's buffer length, summed over calls).</summary>
    public long ElementsReduced { get; private set; }

    /// <summary>Wall time spent in those all-reduces (Stopwatch ticks): the waits a step's time report counts as communication.</summary>
    public long CommunicationTicks { get; private set; }

    /// <summary>Megatron's g, forward: a row-parallel projection's partial outputs become their sum on every rank.</summary>
    public void SumPartialOutputs<T>(Memory<T> partial) where T : unmanaged => Reduce(partial);

    /// <summary>Megatron's f, backward: a column-parallel projection's partial d(input) becomes the sum on every rank.</summary>
    public void SumInputGradients<T>(Memory<T> partial) where T : unmanaged => Reduce(partial);

    private void Reduce<T>(Memory<T> data) where T : unmanaged
    {
        if (Ranks == 1)
            return;
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        Group.AllReduce(data.Span);
        CommunicationTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;
        AllReduces++;
        ElementsReduced += data.Length;
    }

    /// <summary>
    /// The global L2 norm of the gradients of the whole model: split tensors' squares summed over the group (one
    /// all-reduce of a double), replicated ones counted once. Collective.
    /// </summary>
    public double GradientNorm(ParameterSet<float> parameters)
    {
        Span<double> sums = stackalloc double[2]; // split, replicated
        sums.Clear();
        foreach (var p in parameters.Tensors)
        {
            int slot = Layout.ShardOf(p.Name).Axis == ShardAxis.Replicated ? 1 : 0;
            foreach (float g in parameters.Gradient(p).Span)
                sums[slot] += (double)g * g;
        }
        if (Ranks > 1)
            Group.AllReduce(sums[..1]);
        return Math.Sqrt(sums[0] + sums[1]);
    }

    /// <summary>Global-norm clipping over the whole model (as <see cref="Optimization.GradientClipping.Clip"/>); returns the norm before clipping.</summary>
    public double ClipGradients(ParameterSet<float> parameters, float maxNorm)
    {
        double norm = GradientNorm(parameters);
        if (maxNorm > 0 && norm > maxNorm && double.IsFinite(norm))
        {
            float scale = (float)(maxNorm / norm);
            foreach (ref float g in parameters.Gradients.AsSpan())
                g *= scale;
        }
        return norm;
    }
}
