using System.Numerics;

namespace Kiln.Training;

/// <summary>
/// Every parameter of a model in one contiguous buffer, with gradients in a second buffer of the same layout:
/// the optimizer, the checkpoint and a data-parallel all-reduce each see one flat array.
/// </summary>
public sealed class ParameterSet<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly List<ParameterTensor> _tensors;

    private ParameterSet(List<ParameterTensor> tensors, int count)
    {
        _tensors = tensors;
        Values = new T[count];
        Gradients = new T[count];
    }

    public T[] Values { get; }
    public T[] Gradients { get; }
    public IReadOnlyList<ParameterTensor> Tensors => _tensors;
    public int Count => Values.Length;

    public Memory<T> Value(ParameterTensor p) => Values.AsMemory(p.Offset, p.Length);
    public Memory<T> Gradient(ParameterTensor p) => Gradients.AsMemory(p.Offset, p.Length);

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
