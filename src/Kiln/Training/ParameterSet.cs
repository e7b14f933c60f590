using System.Numerics;

namespace Kiln.Training;

/// <summary>
/// Every parameter of a model in one contiguous buffer, with gradients in a second buffer of the same layout:
/// the optimizer, the checkpoint and a data-parallel all-reduce each see one flat array.
/// </summary>
public sealed class ParameterSet<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly List<ParameterTensor> _tensors;

    private T[]? _values, _gradients;

    private ParameterSet(List<ParameterTensor> tensors, int count)
    {
        _tensors = tensors;
        Count = count;
    }

    /// <summary>
    /// The flat buffers, allocated on first use: ZeRO (stages 2 and 3) keeps only a shard of them through
    /// <see cref="Storage"/> and must never pay for the full arrays.
    /// </summary>
    public T[] Values => _values ??= new T[Count];
    public T[] Gradients => _gradients ??= new T[Count];

    public bool ValuesAllocated => _values is not null;
    public bool GradientsAllocated => _gradients is not null;

    public IReadOnlyList<ParameterTensor> Tensors => _tensors;
    public int Count { get; }

    /// <summary>Where <see cref="Value"/> and <see cref="Gradient"/> resolve instead of the flat buffers, when set.</summary>
    public IParameterStorage<T>? Storage { get; set; }

    public Memory<T> Value(ParameterTensor p) => Storage is { } s ? s.Value(p) : Values.AsMemory(p.Offset, p.Length);
    public Memory<T> Gradient(ParameterTensor p) => Storage is { } s ? s.Gradient(p) : Gradients.AsMemory(p.Offset, p.Length);

    public ParameterTensor this[string name] =>
        _tensors.Find(t => t.Name == name) ?? throw new KeyNotFoundException($"no parameter named {name}");

    /// <summary>Collects tensors in order, then allocates the two buffers once.</summary>
    public sealed class Builder
    {
        private readonly List<ParameterTensor> _tensors = [];
        private int _count;

        /// <summary>What has been added so far, in order.</summary>
        public IReadOnlyList<ParameterTensor> Tensors => _tensors;

        public ParameterTensor Add(string name, params int[] shape)
        {
            var t = new ParameterTensor(name, _count, shape);
            _count = checked(_count + t.Length);
            _tensors.Add(t);
            return t;
        }

        public ParameterSet<T> Build() => new(_tensors, _count);
    }
}
