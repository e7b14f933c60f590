using System.Numerics;

namespace Kiln.Training;

/// <summary>
/// Lends a model the memory of its tensors when they do not live in the flat buffers of its
/// <see cref="ParameterSet{T}"/>: ZeRO keeps a 1/N shard per rank and materializes one layer's full tensors (values,
/// gradients) only while that layer runs.
/// </summary>
public interface IParameterStorage<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    Memory<T> Value(ParameterTensor p);
    Memory<T> Gradient(ParameterTensor p);
}
