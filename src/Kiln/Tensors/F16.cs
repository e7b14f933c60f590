using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>
/// Kernels for ggml F16 rows: little-endian IEEE binary16, two bytes per element. Conversions are bit-identical to
/// ggml (see <see cref="HalfBits"/>); dots accumulate in float.
/// </summary>
public static class F16
{
    public const int BlockBytes = 2;

    /// <summary>Half row to floats; <paramref name="src"/> is 2 bytes per element of <paramref name="dst"/>.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, src.Length, dst.Length, nameof(src));
        // Measured on Zen 4 (512-bit ops double-pumped): the AVX2 path is as fast or faster here.
        if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int i = 0; i < dst.Length; i++)
            dst[i] = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]));
    }

    /// <summary>Floats to a half row, rounding to nearest even (ggml's GGML_FP32_TO_FP16).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, dst.Length, src.Length, nameof(dst));
        // Measured on Zen 4 (512-bit ops double-pumped): the AVX2 path is as fast or faster here.
        if (CpuPaths.CanAvx2)
            QuantizeAvx2(src, dst);
        else
            QuantizeScalar(src, dst);
    }

    public static void QuantizeScalar(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int i = 0; i < src.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(dst[(2 * i)..], HalfBits.FromSingle(src[i]));
    }

    /// <summary>
    /// Half weights row · float activations in the order of llama.cpp's matrix-vector kernel (ggml_vec_dot_f16,
    /// AVX2): elements [0, n − n mod 32) in four 8-lane FMA accumulators combined as <see cref="F32.Dot"/> combines
    /// them, the remaining elements added in double. The matmul path passes activations already rounded to F16
    /// (<see cref="RoundActivations"/>), so every product is exact and only the additions round, as in llama.cpp.
    /// </summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(w, x);
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference for <see cref="Dot"/>: the same operations in the same order, one lane at a time.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        return DotScalarOrder(w, x, 1f);
    }

    /// <summary>
    /// <see cref="Dot"/>'s operations one lane at a time, each activation first multiplied by the power of two
    /// <paramref name="activationFactor"/> (exact: 1 for <see cref="DotScalar"/>, 2^−112 to undo
    /// <see cref="PrescaleActivations"/> for <see cref="DotPrescaledScalar"/>).
    /// </summary>
    private static float DotScalarOrder(ReadOnlySpan<byte> w, ReadOnlySpan<float> x, float activationFactor)
    {
        int n = x.Length, blocked = n - n % F32.DotStep;
        Span<float> acc = stackalloc float[F32.DotStep];
        acc.Clear();
        for (int i = 0; i < blocked; i += F32.DotStep)
        {
            for (int j = 0; j < F32.DotStep; j++)
                acc[j] = MathF.FusedMultiplyAdd(WeightAt(w, i + j), x[i + j] * activationFactor, acc[j]);
        }
        for (int l = 0; l < F32.Lanes; l++)
        {
            acc[l] += acc[2 * F32.Lanes + l];
            acc[F32.Lanes + l] += acc[3 * F32.Lanes + l];
            acc[l] += acc[F32.Lanes + l];
        }
        double sum = F32.SumLanesPairwise(acc[..F32.Lanes]);
        for (int i = blocked; i < n; i++)
            sum += WeightAt(w, i) * (x[i] * activationFactor);
        return (float)sum;
    }

    /// <summary>
    /// <see cref="Dot"/> with activations pre-multiplied by <see cref="HalfBits.UnscaledFactor"/> (2^112; see
    /// <see cref="PrescaleActivations"/>): the weights then need only <see cref="HalfBits.ToSingleUnscaled(ushort)"/>,
    /// three integer operations per vector instead of ten, which is what bounds F16 decoding. Every product, and so
    /// every sum, is exactly <see cref="Dot"/>'s for finite weights; pre-scaling cannot overflow because the
    /// activations are F16-rounded (|x| ≤ 65504, and 65504 · 2^112 &lt; float.MaxValue).
    /// </summary>
    public static float DotPrescaled(ReadOnlySpan<byte> w, ReadOnlySpan<float> xScaled)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, xScaled.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotPrescaledAvx512(w, xScaled);
        if (CpuPaths.CanAvx2)
            return DotPrescaledAvx2(w, xScaled);
        return DotPrescaledScalar(w, xScaled);
    }

    /// <summary>
    /// Reference for <see cref="DotPrescaled"/>: <see cref="DotScalar"/> of the weights and the activations scaled
    /// back (exactly). Its products are the fast paths' products, Inf/NaN weights included: those paths notice
    /// such weights and come here.
    /// </summary>
    public static float DotPrescaledScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> xScaled)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, xScaled.Length, nameof(w));
        return DotScalarOrder(w, xScaled, InverseUnscaledFactor);
    }

    /// <summary>Multiplies F16-rounded activations by 2^112 (exact) for <see cref="DotPrescaled"/>.</summary>
    public static void PrescaleActivations(Span<float> x) => TensorPrimitives.Multiply(x, HalfBits.UnscaledFactor, x);

    internal static float DotPrescaledAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        ref short pw = ref Unsafe.As<byte, short>(ref MemoryMarshal.GetReference(w));
        ref float px = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<ushort> exponentGap = Vector256<ushort>.AllBitsSet, exponent = Vector256.Create((ushort)0x7C00);
        for (; i + F32.DotStep <= n; i += F32.DotStep)
        {
            Vector256<short> h0 = Vector256.LoadUnsafe(ref pw, (nuint)i), h1 = Vector256.LoadUnsafe(ref pw, (nuint)i + 16);
            // 0 in a lane once any half there had an all-ones exponent (Inf/NaN)
            exponentGap = Vector256.Min(Vector256.Min(exponentGap, Vector256.AndNot(exponent, h0.AsUInt16())), Vector256.AndNot(exponent, h1.AsUInt16()));
            (Vector256<int> w0, Vector256<int> w1) = Vector256.Widen(h0);
            (Vector256<int> w2, Vector256<int> w3) = Vector256.Widen(h1);
            acc0 = Vector256.FusedMultiplyAdd(HalfBits.ToSingleUnscaled(w0), Vector256.LoadUnsafe(ref px, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(HalfBits.ToSingleUnscaled(w1), Vector256.LoadUnsafe(ref px, (nuint)i + 8), acc1);
            acc2 = Vector256.FusedMultiplyAdd(HalfBits.ToSingleUnscaled(w2), Vector256.LoadUnsafe(ref px, (nuint)i + 16), acc2);
            acc3 = Vector256.FusedMultiplyAdd(HalfBits.ToSingleUnscaled(w3), Vector256.LoadUnsafe(ref px, (nuint)i + 24), acc3);
        }
        // The accumulators end here, before any call: a vector live across a call is spilled, and compiled without
        // profile data (kiln compiles loops fully optimized at their first call) the spill lands inside the loop,
        // which halved F16 decoding.
        Vector256<float> lanes = (acc0 + acc2) + (acc1 + acc3);
        if (Vector256.EqualsAny(exponentGap, Vector256<ushort>.Zero) || HasNonFiniteTail(w, i))
            return DotPrescaledScalar(w, x);
        double sum = F32.SumLanesPairwise(lanes);
        for (; i < n; i++)
            sum += HalfBits.ToSingleUnscaled((ushort)Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
        return (float)sum;
    }

    /// <summary><see cref="DotPrescaledAvx2"/>'s order in 512-bit registers, as <see cref="DotAvx512"/> keeps <see cref="DotAvx2"/>'s.</summary>
    internal static float DotPrescaledAvx512(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        ref short pw = ref Unsafe.As<byte, short>(ref MemoryMarshal.GetReference(w));
        ref float px = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        Vector512<float> acc01 = Vector512<float>.Zero, acc23 = acc01;
        Vector512<ushort> exponentGap = Vector512<ushort>.AllBitsSet, exponent = Vector512.Create((ushort)0x7C00);
        for (; i + F32.DotStep <= n; i += F32.DotStep)
        {
            Vector512<short> h = Vector512.LoadUnsafe(ref pw, (nuint)i);
            exponentGap = Vector512.Min(exponentGap, Vector512.AndNot(exponent, h.AsUInt16())); // see DotPrescaledAvx2
            (Vector512<int> lo, Vector512<int> hi) = Vector512.Widen(h);
            acc01 = Vector512.FusedMultiplyAdd(HalfBits.ToSingleUnscaled(lo), Vector512.LoadUnsafe(ref px, (nuint)i), acc01);
            acc23 = Vector512.FusedMultiplyAdd(HalfBits.ToSingleUnscaled(hi), Vector512.LoadUnsafe(ref px, (nuint)i + 16), acc23);
        }
        Vector512<float> pairs = acc01 + acc23; // before any call: see DotPrescaledAvx2
        if (Vector512.EqualsAny(exponentGap, Vector512<ushort>.Zero) || HasNonFiniteTail(w, i))
            return DotPrescaledScalar(w, x);
        double sum = F32.SumLanesPairwise(pairs.GetLower() + pairs.GetUpper());
        for (; i < n; i++)
            sum += HalfBits.ToSingleUnscaled((ushort)Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
        return (float)sum;
    }

    /// <summary>
    /// The matrix-matrix order (tinyBLAS, batches of two or more rows): one 8-lane FMA accumulator over the row,
    /// lanes summed as <see cref="F32.SumLanesHalving(Vector256{float})"/>. The length must be a multiple of 8.
    /// </summary>
    public static float DotSingleAccumulator(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        if (x.Length % F32.Lanes != 0)
            throw new ArgumentException($"the single-accumulator order needs a length that is a multiple of {F32.Lanes}; got {x.Length}", nameof(x));
        if (CpuPaths.CanAvx2)
            return DotSingleAccumulatorAvx2(w, x);
        return DotSingleAccumulatorScalar(w, x);
    }

    public static float DotSingleAccumulatorScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        Span<float> acc = stackalloc float[F32.Lanes];
        acc.Clear();
        for (int i = 0; i + F32.Lanes <= x.Length; i += F32.Lanes)
        {
            for (int l = 0; l < F32.Lanes; l++)
                acc[l] = MathF.FusedMultiplyAdd(WeightAt(w, i + l), x[i + l], acc[l]);
        }
        return F32.SumLanesHalving(acc);
    }

    /// <summary>
    /// Rounds activations to F16 precision and keeps them as floats: what llama.cpp's conversion of activations to
    /// F16 before an F16 product computes, without converting them back in every row's dot.
    /// </summary>
    public static void RoundActivations(ReadOnlySpan<float> x, Span<float> rounded)
    {
        RowArguments.CheckSameLength(x.Length, rounded.Length, nameof(rounded));
        int i = 0;
        if (CpuPaths.CanAvx2)
        {
            ref float px = ref MemoryMarshal.GetReference(x);
            ref float pr = ref MemoryMarshal.GetReference(rounded);
            for (; i + 8 <= x.Length; i += 8)
                HalfBits.ToSingle(HalfBits.FromSingle(Vector256.LoadUnsafe(ref px, (nuint)i))).StoreUnsafe(ref pr, (nuint)i);
        }
        for (; i < x.Length; i++)
            rounded[i] = HalfBits.ToSingle(HalfBits.FromSingle(x[i]));
    }

    private static bool HasNonFiniteTail(ReadOnlySpan<byte> w, int from)
    {
        for (int i = from; i < w.Length / 2; i++)
        {
            if ((BinaryPrimitives.ReadUInt16LittleEndian(w[(2 * i)..]) & 0x7C00) == 0x7C00)
                return true;
        }
        return false;
    }

    private const float InverseUnscaledFactor = 1.925929944387236e-34f; // 2^-112

    private static float WeightAt(ReadOnlySpan<byte> w, int i) => HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(w[(2 * i)..]));

    // ---- SIMD paths: callers have checked the lengths. ----

    internal static void DequantizeAvx2(ReadOnlySpan<byte> src, Span<float> dst)
    {
        ref ushort s = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(src));
        ref float d = ref MemoryMarshal.GetReference(dst);
        int n = dst.Length, i = 0;
        for (; i + 16 <= n; i += 16)
        {
            (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
            HalfBits.ToSingle(lo).StoreUnsafe(ref d, (nuint)i);
            HalfBits.ToSingle(hi).StoreUnsafe(ref d, (nuint)i + 8);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = HalfBits.ToSingle(Unsafe.Add(ref s, i));
    }

    internal static void DequantizeAvx512(ReadOnlySpan<byte> src, Span<float> dst)
    {
        ref ushort s = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(src));
        ref float d = ref MemoryMarshal.GetReference(dst);
        int n = dst.Length, i = 0;
        for (; i + 32 <= n; i += 32)
        {
            (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.LoadUnsafe(ref s, (nuint)i));
            HalfBits.ToSingle(lo).StoreUnsafe(ref d, (nuint)i);
            HalfBits.ToSingle(hi).StoreUnsafe(ref d, (nuint)i + 16);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = HalfBits.ToSingle(Unsafe.Add(ref s, i));
    }

    internal static void QuantizeAvx2(ReadOnlySpan<float> src, Span<byte> dst)
    {
        ref float s = ref MemoryMarshal.GetReference(src);
        ref ushort d = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(dst));
        int n = src.Length, i = 0;
        for (; i + 16 <= n; i += 16)
        {
            Vector256<uint> lo = HalfBits.FromSingle(Vector256.LoadUnsafe(ref s, (nuint)i));
            Vector256<uint> hi = HalfBits.FromSingle(Vector256.LoadUnsafe(ref s, (nuint)i + 8));
            Vector256.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = HalfBits.FromSingle(Unsafe.Add(ref s, i));
    }

    internal static void QuantizeAvx512(ReadOnlySpan<float> src, Span<byte> dst)
    {
        ref float s = ref MemoryMarshal.GetReference(src);
        ref ushort d = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(dst));
        int n = src.Length, i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Vector512<uint> lo = HalfBits.FromSingle(Vector512.LoadUnsafe(ref s, (nuint)i));
            Vector512<uint> hi = HalfBits.FromSingle(Vector512.LoadUnsafe(ref s, (nuint)i + 16));
            Vector512.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = HalfBits.FromSingle(Unsafe.Add(ref s, i));
    }

    internal static float DotAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        ref ushort pw = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(w));
        ref float px = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (; i + F32.DotStep <= n; i += F32.DotStep)
        {
            (Vector256<uint> w0, Vector256<uint> w1) = Vector256.Widen(Vector256.LoadUnsafe(ref pw, (nuint)i));
            (Vector256<uint> w2, Vector256<uint> w3) = Vector256.Widen(Vector256.LoadUnsafe(ref pw, (nuint)i + 16));
            acc0 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(w0), Vector256.LoadUnsafe(ref px, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(w1), Vector256.LoadUnsafe(ref px, (nuint)i + 8), acc1);
            acc2 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(w2), Vector256.LoadUnsafe(ref px, (nuint)i + 16), acc2);
            acc3 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(w3), Vector256.LoadUnsafe(ref px, (nuint)i + 24), acc3);
        }
        double sum = F32.SumLanesPairwise((acc0 + acc2) + (acc1 + acc3));
        for (; i < n; i++)
            sum += HalfBits.ToSingle(Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
        return (float)sum;
    }

    /// <summary>
    /// <see cref="DotAvx2"/>'s exact order in 512-bit registers: one register holds accumulators 0 and 1, the other
    /// 2 and 3, so adding the two and then their halves is (a0 + a2) + (a1 + a3). Half as many conversion
    /// instructions per element, which is what bounds this kernel.
    /// </summary>
    internal static float DotAvx512(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        ref ushort pw = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(w));
        ref float px = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        Vector512<float> acc01 = Vector512<float>.Zero, acc23 = acc01;
        for (; i + F32.DotStep <= n; i += F32.DotStep)
        {
            (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.LoadUnsafe(ref pw, (nuint)i));
            acc01 = Vector512.FusedMultiplyAdd(HalfBits.ToSingle(lo), Vector512.LoadUnsafe(ref px, (nuint)i), acc01);
            acc23 = Vector512.FusedMultiplyAdd(HalfBits.ToSingle(hi), Vector512.LoadUnsafe(ref px, (nuint)i + 16), acc23);
        }
        Vector512<float> pairs = acc01 + acc23;
        double sum = F32.SumLanesPairwise(pairs.GetLower() + pairs.GetUpper());
        for (; i < n; i++)
            sum += HalfBits.ToSingle(Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
        return (float)sum;
    }

    internal static float DotSingleAccumulatorAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        ref ushort pw = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(w));
        ref float px = ref MemoryMarshal.GetReference(x);
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < x.Length; i += F32.Lanes)
        {
            Vector256<uint> h = Vector256.WidenLower(Vector128.LoadUnsafe(ref pw, (nuint)i).ToVector256Unsafe());
            acc = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(h), Vector256.LoadUnsafe(ref px, (nuint)i), acc);
        }
        return F32.SumLanesHalving(acc);
    }
}
