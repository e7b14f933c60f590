using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Training.Ops;

/// <summary>
/// Dot product and scaled add for the training ops, over float or double. Written here rather than taken from
/// TensorPrimitives because its reductions align to the data's address, and the sum order then depends on where
/// the GC placed an array: resuming from a checkpoint into fresh arrays must give the same bits.
/// </summary>
public static class DenseVector
{
    public static T Dot<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (x.Length != y.Length)
            throw new ArgumentException("lengths differ");
        return Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported ? DotVector256(x, y) : DotScalar(x, y);
    }

    /// <summary>The same sum order as <see cref="DotVector256"/>: four interleaved 256-bit accumulators, lanes summed pairwise.</summary>
    public static T DotScalar<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int lanes = Vector256<T>.Count;
        int block = 4 * lanes;
        Span<T> acc = stackalloc T[32];
        acc = acc[..block];
        acc.Clear();
        int i = 0;
        for (; i + block <= x.Length; i += block)
            for (int j = 0; j < block; j++)
                acc[j] += x[i + j] * y[i + j];
        for (; i + lanes <= x.Length; i += lanes)
            for (int j = 0; j < lanes; j++)
                acc[j] += x[i + j] * y[i + j];
        for (int j = 0; j < lanes; j++)
            acc[j] = (acc[j] + acc[lanes + j]) + (acc[2 * lanes + j] + acc[3 * lanes + j]);
        T sum = SumLanes(acc[..lanes]);
        for (; i < x.Length; i++)
            sum += x[i] * y[i];
        return sum;
    }

    internal static T DotVector256<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref T xr = ref MemoryMarshal.GetReference(x);
        ref T yr = ref MemoryMarshal.GetReference(y);
        int lanes = Vector256<T>.Count;
        var a0 = Vector256<T>.Zero;
        var a1 = Vector256<T>.Zero;
        var a2 = Vector256<T>.Zero;
        var a3 = Vector256<T>.Zero;
        int i = 0;
        int n = x.Length;
        for (; i + 4 * lanes <= n; i += 4 * lanes)
        {
            // separate multiply and add (no FMA) so the scalar twin matches bit for bit
            a0 += Vector256.LoadUnsafe(ref xr, (nuint)i) * Vector256.LoadUnsafe(ref yr, (nuint)i);
            a1 += Vector256.LoadUnsafe(ref xr, (nuint)(i + lanes)) * Vector256.LoadUnsafe(ref yr, (nuint)(i + lanes));
            a2 += Vector256.LoadUnsafe(ref xr, (nuint)(i + 2 * lanes)) * Vector256.LoadUnsafe(ref yr, (nuint)(i + 2 * lanes));
            a3 += Vector256.LoadUnsafe(ref xr, (nuint)(i + 3 * lanes)) * Vector256.LoadUnsafe(ref yr, (nuint)(i + 3 * lanes));
        }
        for (; i + lanes <= n; i += lanes)
            a0 += Vector256.LoadUnsafe(ref xr, (nuint)i) * Vector256.LoadUnsafe(ref yr, (nuint)i);
        var total = (a0 + a1) + (a2 + a3);
        Span<T> lanesOut = stackalloc T[8];
        lanesOut = lanesOut[..lanes];
        total.CopyTo(lanesOut);
        T sum = SumLanes(lanesOut);
        for (; i < n; i++)
            sum += Unsafe.Add(ref xr, i) * Unsafe.Add(ref yr, i);
        return sum;
    }

    /// <summary>Pairwise halving, the same for both paths.</summary>
    private static T SumLanes<T>(Span<T> lanes) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int width = lanes.Length / 2; width >= 1; width /= 2)
            for (int j = 0; j < width; j++)
                lanes[j] += lanes[j + width];
        return lanes[0];
    }

    /// <summary>y[i] += a·x[i] (multiply, then add: element-wise, so every path rounds alike).</summary>
    public static void AddScaled<T>(ReadOnlySpan<T> x, T a, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (x.Length != y.Length)
            throw new ArgumentException("lengths differ");
        if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            AddScaledVector256(x, a, y);
        else
            AddScaledScalar(x, a, y);
    }

    public static void AddScaledScalar<T>(ReadOnlySpan<T> x, T a, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < x.Length; i++)
            y[i] += a * x[i];
    }

    internal static void AddScaledVector256<T>(ReadOnlySpan<T> x, T a, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref T xr = ref MemoryMarshal.GetReference(x);
        ref T yr = ref MemoryMarshal.GetReference(y);
        int lanes = Vector256<T>.Count;
        var va = Vector256.Create(a);
        int i = 0;
        for (; i + lanes <= x.Length; i += lanes)
            (Vector256.LoadUnsafe(ref yr, (nuint)i) + va * Vector256.LoadUnsafe(ref xr, (nuint)i)).StoreUnsafe(ref yr, (nuint)i);
        for (; i < x.Length; i++)
            Unsafe.Add(ref yr, i) += a * Unsafe.Add(ref xr, i);
    }
}
