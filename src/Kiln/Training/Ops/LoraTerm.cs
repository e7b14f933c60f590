using System.Numerics;

namespace Kiln.Training.Ops;

/// <summary>
/// The trainable low-rank part of a <see cref="FrozenLoraLinear{T}"/>: A [rank, in], B [out, rank], their gradients,
/// and per-call buffers U [rows, rank] (scale·x·Aᵀ, saved by forward for backward) and DU [rows, rank] (scratch).
/// Rank 0 (<see cref="None"/>) means the layer is the frozen product alone.
/// </summary>
public readonly record struct LoraTerm<T>(ReadOnlyMemory<T> A, ReadOnlyMemory<T> B, Memory<T> GradA, Memory<T> GradB,
    Memory<T> U, Memory<T> DU, int Rank, T Scale) where T : unmanaged, IFloatingPointIeee754<T>
{
    public static LoraTerm<T> None => default;

    public bool IsNone => Rank == 0;
}
