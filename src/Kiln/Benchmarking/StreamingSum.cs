using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Kiln.Tensors;

namespace Kiln.Benchmarking;

/// <summary>
/// The read-bandwidth probe's inner loop: a wrapping 32-bit sum of a buffer. Integer addition makes the
/// result independent of the summation order, so every path must return exactly the scalar sum, and the
/// caller keeps the result so the loads cannot be optimised away.
/// </summary>
public static class StreamingSum
{
    public static uint Sum(ReadOnlySpan<uint> data) => CpuPaths.CanAvx2 ? SumAvx2(data) : SumScalar(data);

    // Fully optimised from the first call: the probe calls these only a few times per pass, too few for tiered
    // compilation to replace slow first-tier code before the timed passes.
    /// <summary>Reference: one accumulator, in element order, wrapping modulo 2^32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static uint SumScalar(ReadOnlySpan<uint> data)
    {
        uint sum = 0;
        foreach (uint v in data)
            sum = unchecked(sum + v);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static uint SumAvx2(ReadOnlySpan<uint> data)
    {
        ref uint p = ref MemoryMarshal.GetReference(data);
        int n = data.Length, i = 0;
        // Four independent accumulators over 128 bytes per step (two cache lines) keep enough loads in
        // flight for the memory system; the add latency never limits a DRAM-bound loop.
        Vector256<uint> acc0 = Vector256<uint>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (; i + 32 <= n; i += 32)
        {
            acc0 += Vector256.LoadUnsafe(ref p, (nuint)i);
            acc1 += Vector256.LoadUnsafe(ref p, (nuint)i + 8);
            acc2 += Vector256.LoadUnsafe(ref p, (nuint)i + 16);
            acc3 += Vector256.LoadUnsafe(ref p, (nuint)i + 24);
        }
        for (; i + 8 <= n; i += 8)
            acc0 += Vector256.LoadUnsafe(ref p, (nuint)i);
        uint sum = Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
        for (; i < n; i++)
            sum = unchecked(sum + Unsafe.Add(ref p, i));
        return sum;
    }
}
