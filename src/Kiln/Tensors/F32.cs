using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>
/// Kernels for plain float32 rows. Both dot products fix their summation order, on every path and every CPU,
/// to the one llama.cpp's CPU backend (ggml built for AVX2) uses: float addition is not associative, and behind
/// an F16 KV cache a last-bit difference can flip an F16 rounding and grow from there. With the same orders,
/// Kiln's log-probabilities for a real F32 model agree with llama.cpp's to about 1e-6 instead of 1e-3
/// (docs/architecture.md, "Agreement with llama.cpp").
/// </summary>
public static class F32
{
    /// <summary>Floats per accumulator register in both orders.</summary>
    public const int Lanes = 8;

    /// <summary>Elements per step of <see cref="Dot"/>: four accumulators of <see cref="Lanes"/>.</summary>
    public const int DotStep = 4 * Lanes;

    /// <summary>
    /// The matrix-vector order (ggml_vec_dot_f32): elements [0, n − n mod 32) go through four 8-lane FMA accumulators
    /// (element i into accumulator (i mod 32) / 8, lane i mod 8), which are combined as (a0 + a2) + (a1 + a3) and
    /// whose lanes are summed as ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)); the remaining elements are then
    /// added one at a time, product and sum each rounded.
    /// </summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        RowArguments.CheckSameLength(a.Length, b.Length, nameof(b));
        // 512-bit registers would need a different order (or the same work split in halves); the 256-bit
        // loop is already limited by memory for rows that do not fit in cache.
        if (CpuPaths.CanAvx2)
            return DotAvx2(a, b);
        return DotScalar(a, b);
    }

    /// <summary>Reference for <see cref="Dot"/>: the same operations in the same order, one lane at a time.</summary>
    public static float DotScalar(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        RowArguments.CheckSameLength(a.Length, b.Length, nameof(b));
        int n = a.Length, blocked = n - n % DotStep;
        Span<float> acc = stackalloc float[DotStep];
        acc.Clear();
        for (int i = 0; i < blocked; i += DotStep)
        {
            for (int j = 0; j < DotStep; j++)
                acc[j] = MathF.FusedMultiplyAdd(a[i + j], b[i + j], acc[j]);
        }
        for (int l = 0; l < Lanes; l++)
        {
            acc[l] += acc[2 * Lanes + l];
            acc[Lanes + l] += acc[3 * Lanes + l];
            acc[l] += acc[Lanes + l];
        }
        float sum = SumLanesPairwise(acc[..Lanes]);
        for (int i = blocked; i < n; i++)
        {
            float product = a[i] * b[i];
            sum += product;
        }
        return sum;
    }

    internal static float DotAvx2(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        ref float pa = ref MemoryMarshal.GetReference(a);
        ref float pb = ref MemoryMarshal.GetReference(b);
        int n = a.Length, i = 0;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (; i + DotStep <= n; i += DotStep)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i), Vector256.LoadUnsafe(ref pb, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i + 8), Vector256.LoadUnsafe(ref pb, (nuint)i + 8), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i + 16), Vector256.LoadUnsafe(ref pb, (nuint)i + 16), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i + 24), Vector256.LoadUnsafe(ref pb, (nuint)i + 24), acc3);
        }
        float sum = SumLanesPairwise((acc0 + acc2) + (acc1 + acc3));
        for (; i < n; i++)
        {
            float product = Unsafe.Add(ref pa, i) * Unsafe.Add(ref pb, i);
            sum += product;
        }
        return sum;
    }

    /// <summary>
    /// The matrix-matrix order (llama.cpp's tinyBLAS tiles, used for batches of two or more rows): one 8-lane FMA
    /// accumulator runs over the whole row (element i into lane i mod 8) and its lanes are summed as
    /// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). The length must be a multiple of 8.
    /// </summary>
    public static float DotSingleAccumulator(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        CheckSingleAccumulatorLengths(a.Length, b.Length);
        if (CpuPaths.CanAvx2)
            return DotSingleAccumulatorAvx2(a, b);
        return DotSingleAccumulatorScalar(a, b);
    }

    /// <summary>Reference for <see cref="DotSingleAccumulator"/>, one lane at a time.</summary>
    public static float DotSingleAccumulatorScalar(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        CheckSingleAccumulatorLengths(a.Length, b.Length);
        Span<float> acc = stackalloc float[Lanes];
        acc.Clear();
        for (int i = 0; i < a.Length; i += Lanes)
        {
            for (int l = 0; l < Lanes; l++)
                acc[l] = MathF.FusedMultiplyAdd(a[i + l], b[i + l], acc[l]);
        }
        return SumLanesHalving(acc);
    }

    internal static float DotSingleAccumulatorAvx2(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        ref float pa = ref MemoryMarshal.GetReference(a);
        ref float pb = ref MemoryMarshal.GetReference(b);
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < a.Length; i += Lanes)
            acc = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i), Vector256.LoadUnsafe(ref pb, (nuint)i), acc);
        return SumLanesHalving(acc);
    }

    /// <summary>
    /// One row · four activation rows (<paramref name="activationStride"/> floats apart), each result bit-identical to
    /// <see cref="DotSingleAccumulator"/>: every weight load serves four tokens and four chains run side by side.
    /// </summary>
    public static void DotSingleAccumulator4(ReadOnlySpan<float> a, ReadOnlySpan<float> x, int activationStride, Span<float> results)
    {
        int n = a.Length;
        if (n % Lanes != 0)
            throw new ArgumentException($"the single-accumulator order needs a length that is a multiple of {Lanes}; got {n}", nameof(a));
        if (activationStride < n || x.Length < 3L * activationStride + n || results.Length < 4)
            throw new ArgumentException($"four activation rows of {n} floats, {activationStride} apart, and four results are needed", nameof(x));
        if (!CpuPaths.CanAvx2)
        {
            for (int t = 0; t < 4; t++)
                results[t] = DotSingleAccumulatorScalar(a, x.Slice(t * activationStride, n));
            return;
        }
        ref float pa = ref MemoryMarshal.GetReference(a);
        ref float p0 = ref MemoryMarshal.GetReference(x);
        ref float p1 = ref Unsafe.Add(ref p0, activationStride);
        ref float p2 = ref Unsafe.Add(ref p1, activationStride);
        ref float p3 = ref Unsafe.Add(ref p2, activationStride);
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < n; i += Lanes)
        {
            Vector256<float> w = Vector256.LoadUnsafe(ref pa, (nuint)i);
            a0 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref p0, (nuint)i), a0);
            a1 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref p1, (nuint)i), a1);
            a2 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref p2, (nuint)i), a2);
            a3 = Vector256.FusedMultiplyAdd(w, Vector256.LoadUnsafe(ref p3, (nuint)i), a3);
        }
        results[0] = SumLanesHalving(a0);
        results[1] = SumLanesHalving(a1);
        results[2] = SumLanesHalving(a2);
        results[3] = SumLanesHalving(a3);
    }

    /// <summary>
    /// A 4 × 4 tile in <see cref="DotSingleAccumulator"/>'s order: four weight rows (<paramref name="rowStride"/>
    /// floats apart in <paramref name="a"/>, each <paramref name="n"/> long) · four activation rows
    /// (<paramref name="activationStride"/> apart); results[t·4 + r] has exactly the bits of
    /// DotSingleAccumulator(row r, activation t). Sixteen independent FMA chains keep both FMA pipes busy, where the
    /// four of <see cref="DotSingleAccumulator4"/> leave half of them waiting on the FMA latency.
    /// </summary>
    public static void DotSingleAccumulator4x4(ReadOnlySpan<float> a, int rowStride, int n, ReadOnlySpan<float> x, int activationStride, Span<float> results)
    {
        if (n % Lanes != 0 || n < 0)
            throw new ArgumentException($"the single-accumulator order needs a length that is a multiple of {Lanes}; got {n}", nameof(n));
        if (rowStride < n || a.Length < 3L * rowStride + n)
            throw new ArgumentException($"four weight rows of {n} floats, {rowStride} apart, are needed", nameof(a));
        if (activationStride < n || x.Length < 3L * activationStride + n || results.Length < 16)
            throw new ArgumentException($"four activation rows of {n} floats, {activationStride} apart, and sixteen results are needed", nameof(x));
        if (!CpuPaths.CanAvx2)
        {
            for (int t = 0; t < 4; t++)
            {
                for (int r = 0; r < 4; r++)
                    results[t * 4 + r] = DotSingleAccumulatorScalar(a.Slice(r * rowStride, n), x.Slice(t * activationStride, n));
            }
            return;
        }
        ref float w0 = ref MemoryMarshal.GetReference(a);
        ref float w1 = ref Unsafe.Add(ref w0, rowStride);
        ref float w2 = ref Unsafe.Add(ref w1, rowStride);
        ref float w3 = ref Unsafe.Add(ref w2, rowStride);
        ref float x0 = ref MemoryMarshal.GetReference(x);
        ref float x1 = ref Unsafe.Add(ref x0, activationStride);
        ref float x2 = ref Unsafe.Add(ref x1, activationStride);
        ref float x3 = ref Unsafe.Add(ref x2, activationStride);
        Vector256<float> c00 = Vector256<float>.Zero, c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        Vector256<float> c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
        for (int i = 0; i < n; i += Lanes)
        {
            Vector256<float> r0 = Vector256.LoadUnsafe(ref w0, (nuint)i), r1 = Vector256.LoadUnsafe(ref w1, (nuint)i);
            Vector256<float> r2 = Vector256.LoadUnsafe(ref w2, (nuint)i), r3 = Vector256.LoadUnsafe(ref w3, (nuint)i);
            Vector256<float> v = Vector256.LoadUnsafe(ref x0, (nuint)i);
            c00 = Vector256.FusedMultiplyAdd(r0, v, c00); c01 = Vector256.FusedMultiplyAdd(r1, v, c01);
            c02 = Vector256.FusedMultiplyAdd(r2, v, c02); c03 = Vector256.FusedMultiplyAdd(r3, v, c03);
            v = Vector256.LoadUnsafe(ref x1, (nuint)i);
            c10 = Vector256.FusedMultiplyAdd(r0, v, c10); c11 = Vector256.FusedMultiplyAdd(r1, v, c11);
            c12 = Vector256.FusedMultiplyAdd(r2, v, c12); c13 = Vector256.FusedMultiplyAdd(r3, v, c13);
            v = Vector256.LoadUnsafe(ref x2, (nuint)i);
            c20 = Vector256.FusedMultiplyAdd(r0, v, c20); c21 = Vector256.FusedMultiplyAdd(r1, v, c21);
            c22 = Vector256.FusedMultiplyAdd(r2, v, c22); c23 = Vector256.FusedMultiplyAdd(r3, v, c23);
            v = Vector256.LoadUnsafe(ref x3, (nuint)i);
            c30 = Vector256.FusedMultiplyAdd(r0, v, c30); c31 = Vector256.FusedMultiplyAdd(r1, v, c31);
            c32 = Vector256.FusedMultiplyAdd(r2, v, c32); c33 = Vector256.FusedMultiplyAdd(r3, v, c33);
        }
        results[0] = SumLanesHalving(c00); results[1] = SumLanesHalving(c01); results[2] = SumLanesHalving(c02); results[3] = SumLanesHalving(c03);
        results[4] = SumLanesHalving(c10); results[5] = SumLanesHalving(c11); results[6] = SumLanesHalving(c12); results[7] = SumLanesHalving(c13);
        results[8] = SumLanesHalving(c20); results[9] = SumLanesHalving(c21); results[10] = SumLanesHalving(c22); results[11] = SumLanesHalving(c23);
        results[12] = SumLanesHalving(c30); results[13] = SumLanesHalving(c31); results[14] = SumLanesHalving(c32); results[15] = SumLanesHalving(c33);
    }

    /// <summary>((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)): the lane sum of <see cref="Dot"/>.</summary>
    public static float SumLanesPairwise(Vector256<float> v)
    {
        Vector128<float> t = v.GetLower() + v.GetUpper();
        return (t.GetElement(0) + t.GetElement(1)) + (t.GetElement(2) + t.GetElement(3));
    }

    /// <summary>((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)): the lane sum of <see cref="DotSingleAccumulator"/>.</summary>
    public static float SumLanesHalving(Vector256<float> v)
    {
        Vector128<float> t = v.GetLower() + v.GetUpper();
        return (t.GetElement(0) + t.GetElement(2)) + (t.GetElement(1) + t.GetElement(3));
    }

    internal static float SumLanesPairwise(ReadOnlySpan<float> lanes)
    {
        float t0 = lanes[0] + lanes[4], t1 = lanes[1] + lanes[5], t2 = lanes[2] + lanes[6], t3 = lanes[3] + lanes[7];
        return (t0 + t1) + (t2 + t3);
    }

    internal static float SumLanesHalving(ReadOnlySpan<float> lanes)
    {
        float t0 = lanes[0] + lanes[4], t1 = lanes[1] + lanes[5], t2 = lanes[2] + lanes[6], t3 = lanes[3] + lanes[7];
        return (t0 + t2) + (t1 + t3);
    }

    private static void CheckSingleAccumulatorLengths(int a, int b)
    {
        RowArguments.CheckSameLength(a, b, nameof(b));
        if (a % Lanes != 0)
            throw new ArgumentException($"the single-accumulator order needs a length that is a multiple of {Lanes}; got {a}", nameof(a));
    }
}
