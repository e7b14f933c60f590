using Kiln.Distributed;

namespace Kiln.Training.Parallel;

/// <summary>
/// Moves a flat parameter buffer (weights, gradients or optimizer moments: they share one layout) between the
/// single-process layout and a tensor-parallel rank's shard layout. The full layout is derived from the shard one
/// (same tensors in the same order, whole shapes), so it matches what the single-process model declares without
/// building that model. Lets a tensor-parallel run start from a single-process run's initialization or checkpoint,
/// and gathers its weights back for checkpoints and comparison.
/// </summary>
public sealed class TensorParallelSharding
{
    private readonly (ParameterTensor Full, ParameterTensor Shard, TensorShard Rule)[] _map;

    /// <param name="layout">The split.</param>
    /// <param name="shardTensors">The tensors of one rank's model (every rank declares the same shapes).</param>
    public TensorParallelSharding(TensorParallelLayout layout, IReadOnlyList<ParameterTensor> shardTensors)
    {
        Layout = layout;
        _map = new (ParameterTensor, ParameterTensor, TensorShard)[shardTensors.Count];
        int fullOffset = 0, shardCount = 0;
        for (int i = 0; i < shardTensors.Count; i++)
        {
            var shard = shardTensors[i];
            var rule = layout.ShardOf(shard.Name);
            var full = new ParameterTensor(shard.Name, fullOffset, rule.FullShape(shard.Shape, layout.Ranks));
            if (!rule.ShardShape(full.Shape, layout.Ranks).SequenceEqual(shard.Shape))
                throw new ArgumentException($"{shard.Name}: shape [{string.Join(", ", shard.Shape)}] is not a {layout.Ranks}-way shard of [{string.Join(", ", full.Shape)}]");
            _map[i] = (full, shard, rule);
            fullOffset = checked(fullOffset + full.Length);
            shardCount = checked(shardCount + shard.Length);
        }
        FullCount = fullOffset;
        ShardCount = shardCount;
        FullTensors = _map.Select(m => m.Full).ToArray();
    }

    public TensorParallelLayout Layout { get; }

    /// <summary>The single-process layout: names, offsets and whole shapes.</summary>
    public IReadOnlyList<ParameterTensor> FullTensors { get; }

    public int FullCount { get; }

    /// <summary>Elements each rank holds.</summary>
    public int ShardCount { get; }

    /// <summary>Elements of the single-process layout that are split (the rest is replicated on every rank).</summary>
    public long SplitCount => _map.Where(m => m.Rule.Axis != ShardAxis.Replicated).Sum(m => (long)m.Full.Length);

    /// <summary>Copies rank <paramref name="rank"/>'s part of a single-process buffer into its shard buffer.</summary>
    public void Shard<T>(ReadOnlySpan<T> full, Span<T> shard, int rank) where T : unmanaged
    {
        CheckLengths(full.Length, shard.Length);
        foreach (var (f, s, rule) in _map)
            foreach (var run in rule.Runs(f.Shape, rank, Layout.Ranks))
                full.Slice(f.Offset + run.Full, run.Length).CopyTo(shard.Slice(s.Offset + run.Shard, run.Length));
    }

    /// <summary>
    /// Reassembles a single-process buffer from every rank's shard, <paramref name="shards"/> holding rank r's at
    /// r·ShardCount. Replicated tensors are taken from rank 0.
    /// </summary>
    public void Gather<T>(ReadOnlySpan<T> shards, Span<T> full) where T : unmanaged
    {
        if (shards.Length != (long)ShardCount * Layout.Ranks)
            throw new ArgumentException($"expected {Layout.Ranks} shards of {ShardCount} elements, got {shards.Length} elements");
        CheckLengths(full.Length, ShardCount);
        for (int rank = 0; rank < Layout.Ranks; rank++)
        {
            var shard = shards.Slice(rank * ShardCount, ShardCount);
            foreach (var (f, s, rule) in _map)
            {
                if (rule.Axis == ShardAxis.Replicated && rank > 0)
                    continue;
                foreach (var run in rule.Runs(f.Shape, rank, Layout.Ranks))
                    shard.Slice(s.Offset + run.Shard, run.Length).CopyTo(full.Slice(f.Offset + run.Full, run.Length));
            }
        }
    }

    /// <summary>Collective over the tensor-parallel group: every rank receives the single-process buffer.</summary>
    public void AllGather<T>(Communicator group, ReadOnlySpan<T> shard, Span<T> full) where T : unmanaged
    {
        if (group.Size != Layout.Ranks)
            throw new ArgumentException($"the group has {group.Size} ranks, the layout {Layout.Ranks}");
        var all = new T[(long)ShardCount * group.Size];
        group.AllGather(shard, all);
        Gather<T>(all, full);
    }

    private void CheckLengths(int full, int shard)
    {
        if (full != FullCount || shard != ShardCount)
            throw new ArgumentException($"expected {FullCount} elements in the single-process layout and {ShardCount} in a shard, got {full} and {shard}");
    }
}
