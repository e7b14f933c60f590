using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>Kernels for plain float32 rows.</summary>
public static class F32
{
    /// <summary>Dot product of two equal-length float rows.</summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        RowArguments.CheckSameLength(a.Length, b.Length, nameof(b));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(a, b);
        if (CpuPaths.CanAvx2)
            return DotAvx2(a, b);
        return DotScalar(a, b);
    }

    /// <summary>Reference: one float accumulator, in element order.</summary>
    public static float DotScalar(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        RowArguments.CheckSameLength(a.Length, b.Length, nameof(b));
        float sum = 0f;
        for (int i = 0; i < a.Length; i++)
            sum += a[i] * b[i];
        return sum;
    }

    internal static float DotAvx2(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        ref float pa = ref MemoryMarshal.GetReference(a);
        ref float pb = ref MemoryMarshal.GetReference(b);
        int n = a.Length, i = 0;
        // Four accumulators cover the FMA latency; a single one would serialize every step.
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (; i + 32 <= n; i += 32)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i), Vector256.LoadUnsafe(ref pb, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i + 8), Vector256.LoadUnsafe(ref pb, (nuint)i + 8), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i + 16), Vector256.LoadUnsafe(ref pb, (nuint)i + 16), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i + 24), Vector256.LoadUnsafe(ref pb, (nuint)i + 24), acc3);
        }
        for (; i + 8 <= n; i += 8)
            acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i), Vector256.LoadUnsafe(ref pb, (nuint)i), acc0);
        float sum = Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
        for (; i < n; i++)
            sum += Unsafe.Add(ref pa, i) * Unsafe.Add(ref pb, i);
        return sum;
    }

    internal static float DotAvx512(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        ref float pa = ref MemoryMarshal.GetReference(a);
        ref float pb = ref MemoryMarshal.GetReference(b);
        int n = a.Length, i = 0;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (; i + 64 <= n; i += 64)
        {
            acc0 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref pa, (nuint)i), Vector512.LoadUnsafe(ref pb, (nuint)i), acc0);
            acc1 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref pa, (nuint)i + 16), Vector512.LoadUnsafe(ref pb, (nuint)i + 16), acc1);
            acc2 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref pa, (nuint)i + 32), Vector512.LoadUnsafe(ref pb, (nuint)i + 32), acc2);
            acc3 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref pa, (nuint)i + 48), Vector512.LoadUnsafe(ref pb, (nuint)i + 48), acc3);
        }
        for (; i + 16 <= n; i += 16)
            acc0 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref pa, (nuint)i), Vector512.LoadUnsafe(ref pb, (nuint)i), acc0);
        float sum = Vector512.Sum((acc0 + acc1) + (acc2 + acc3));
        for (; i < n; i++)
            sum += Unsafe.Add(ref pa, i) * Unsafe.Add(ref pb, i);
        return sum;
    }
}
