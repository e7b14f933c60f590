using Kiln.Distributed;
using Kiln.Training.Models;

namespace Kiln.Training.Parallel;

/// <summary>
/// ZeRO stages 2 and 3 seen from the model. Gradients: a unit's full gradient exists only from the first backward use
/// of the unit until its gradients are final; then it is reduce-scattered, this rank's block added to the shard's
/// gradient, and the buffer handed back. Stage 3 also parameters: the shard holds this rank's block of every unit,
/// and a unit's full values are all-gathered just before the model uses them (forward, and again in backward) and
/// dropped right after. The model reaches both through <see cref="IParameterStorage{T}"/>, so its flat buffers are
/// never allocated: what a rank holds is the shard plus the few units in use.
/// </summary>
public sealed class ShardedModelState : IParameterUnitHooks, IParameterStorage<float>
{
    private readonly Communicator _comm;
    private readonly ZeroPartition _partition;
    private readonly ParameterSet<float> _parameters;
    private readonly ParameterUnit[] _units;
    private readonly float[]?[] _values;
    private readonly int[] _uses;
    private readonly float[]?[] _gradients;
    private readonly Dictionary<int, Stack<float[]>> _free = [];
    private readonly float[] _received;

    public ShardedModelState(Communicator comm, ZeroPartition partition, ParameterSet<float> parameters, ParameterUnit[] units, bool shardParameters)
    {
        (_comm, _partition, _parameters, _units) = (comm, partition, parameters, units);
        ShardGradients = new float[partition.ShardLength];
        ShardValues = shardParameters ? new float[partition.ShardLength] : null;
        _values = new float[units.Length][];
        _uses = new int[units.Length];
        _gradients = new float[units.Length][];
        int largestBlock = 0;
        foreach (var s in partition.Units)
            largestBlock = Math.Max(largestBlock, s.BlockLength);
        _received = new float[largestBlock];
        BufferBytes = 4L * largestBlock;
    }

    /// <summary>This rank's block of every unit's averaged gradient (S elements).</summary>
    public float[] ShardGradients { get; }

    /// <summary>Stage 3: this rank's block of every unit's parameters (S elements); null in stage 2.</summary>
    public float[]? ShardValues { get; }

    /// <summary>
    /// Bytes of the buffers for gathered values and unreduced gradients (kept for reuse once handed back, as a caching
    /// allocator does) and the receive block: the working set outside the model states, a few units' worth.
    /// </summary>
    public long BufferBytes { get; private set; }

    public void BeforeUse(ParameterUnit unit, bool backward)
    {
        var shard = _partition.Units[unit.Index];
        if (ShardValues is not null && _uses[unit.Index]++ == 0)
        {
            var full = Rent(shard.PaddedLength(_partition.Size));
            _comm.AllGather<float>(ShardValues.AsSpan(shard.ShardOffset, shard.BlockLength), full);
            _values[unit.Index] = full;
        }
        if (backward && _gradients[unit.Index] is null)
        {
            var g = Rent(shard.PaddedLength(_partition.Size));
            Array.Clear(g);
            _gradients[unit.Index] = g;
        }
    }

    public void AfterUse(ParameterUnit unit, bool backward)
    {
        if (ShardValues is not null && --_uses[unit.Index] == 0)
        {
            Return(_values[unit.Index]!);
            _values[unit.Index] = null;
        }
    }

    public void GradientsFinal(ParameterUnit unit)
    {
        var shard = _partition.Units[unit.Index];
        var g = _gradients[unit.Index] ?? throw new InvalidOperationException($"{unit.Name}: gradients reported final but never produced");
        var received = _received.AsSpan(0, shard.BlockLength);
        _comm.ReduceScatter<float>(g, received);
        var mine = ShardGradients.AsSpan(shard.ShardOffset, shard.BlockLength);
        for (int i = 0; i < mine.Length; i++)
            mine[i] += received[i];
        Return(g);
        _gradients[unit.Index] = null;
    }

    public Memory<float> Value(ParameterTensor p)
    {
        if (ShardValues is null)
            return _parameters.Values.AsMemory(p.Offset, p.Length);
        var u = ParameterUnit.Of(_units, p);
        var full = _values[u.Index] ?? throw new InvalidOperationException($"{p.Name} read while {u.Name}'s parameters are not gathered");
        return full.AsMemory(p.Offset - u.Offset, p.Length);
    }

    public Memory<float> Gradient(ParameterTensor p)
    {
        var u = ParameterUnit.Of(_units, p);
        var full = _gradients[u.Index] ?? throw new InvalidOperationException($"{p.Name}'s gradient used outside {u.Name}'s backward pass");
        return full.AsMemory(p.Offset - u.Offset, p.Length);
    }

    /// <summary>
    /// All parameters in the flat layout, gathered unit by unit (collective: every rank calls it). Stage 3 only;
    /// for checkpoints and the equality tests.
    /// </summary>
    public float[] GatherValues()
    {
        if (ShardValues is null)
            throw new InvalidOperationException("stage 2 keeps full parameters: read them from the parameter set");
        var all = new float[_partition.ParameterCount];
        foreach (var s in _partition.Units)
        {
            var full = new float[s.PaddedLength(_partition.Size)];
            _comm.AllGather<float>(ShardValues.AsSpan(s.ShardOffset, s.BlockLength), full);
            full.AsSpan(0, s.Unit.Length).CopyTo(all.AsSpan(s.Unit.Offset));
        }
        return all;
    }

    private float[] Rent(int length)
    {
        if (_free.TryGetValue(length, out var stack) && stack.Count > 0)
            return stack.Pop();
        BufferBytes += 4L * length;
        return new float[length];
    }

    private void Return(float[] buffer)
    {
        if (!_free.TryGetValue(buffer.Length, out var stack))
            _free[buffer.Length] = stack = new Stack<float[]>();
        stack.Push(buffer);
    }
}
