using System.Buffers.Binary;
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

    /// <summary>Half weights row · float activations, accumulated in float.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(w, x);
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("F16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        float sum = 0f;
        for (int i = 0; i < x.Length; i++)
            sum += HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(w[(2 * i)..])) * x[i];
        return sum;
    }

    /// <summary>
    /// Half weights · half activations (llama.cpp's ggml_vec_dot_f16: activations are converted to F16 once per
    /// matmul, then every row dot converts both sides to float and accumulates in float).
    /// </summary>
    public static float DotF16(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xf16)
    {
        CheckHalfPair(w, xf16);
        // Measured on Zen 4 (512-bit ops double-pumped): the AVX2 path is as fast or faster here.
        if (CpuPaths.CanAvx2)
            return DotF16Avx2(w, xf16);
        return DotF16Scalar(w, xf16);
    }

    public static float DotF16Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xf16)
    {
        CheckHalfPair(w, xf16);
        float sum = 0f;
        for (int i = 0; i < w.Length; i += 2)
            sum += HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(w[i..]))
                   * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(xf16[i..]));
        return sum;
    }

    private static void CheckHalfPair(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x)
    {
        if (w.Length % BlockBytes != 0)
            throw new ArgumentException($"an F16 row is 2 bytes per element; {w.Length} bytes is odd", nameof(w));
        RowArguments.CheckSameLength(w.Length, x.Length, "xf16");
    }

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
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0;
        for (; i + 16 <= n; i += 16)
        {
            (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref pw, (nuint)i));
            acc0 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(lo), Vector256.LoadUnsafe(ref px, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(hi), Vector256.LoadUnsafe(ref px, (nuint)i + 8), acc1);
        }
        float sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += HalfBits.ToSingle(Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
        return sum;
    }

    internal static float DotAvx512(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        ref ushort pw = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(w));
        ref float px = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = acc0;
        for (; i + 32 <= n; i += 32)
        {
            (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.LoadUnsafe(ref pw, (nuint)i));
            acc0 = Vector512.FusedMultiplyAdd(HalfBits.ToSingle(lo), Vector512.LoadUnsafe(ref px, (nuint)i), acc0);
            acc1 = Vector512.FusedMultiplyAdd(HalfBits.ToSingle(hi), Vector512.LoadUnsafe(ref px, (nuint)i + 16), acc1);
        }
        float sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += HalfBits.ToSingle(Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
        return sum;
    }

    internal static float DotF16Avx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xf16)
    {
        ref ushort pw = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(w));
        ref ushort px = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(xf16));
        int n = w.Length / 2, i = 0;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0;
        for (; i + 16 <= n; i += 16)
        {
            (Vector256<uint> wl, Vector256<uint> wh) = Vector256.Widen(Vector256.LoadUnsafe(ref pw, (nuint)i));
            (Vector256<uint> xl, Vector256<uint> xh) = Vector256.Widen(Vector256.LoadUnsafe(ref px, (nuint)i));
            acc0 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(wl), HalfBits.ToSingle(xl), acc0);
            acc1 = Vector256.FusedMultiplyAdd(HalfBits.ToSingle(wh), HalfBits.ToSingle(xh), acc1);
        }
        float sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += HalfBits.ToSingle(Unsafe.Add(ref pw, i)) * HalfBits.ToSingle(Unsafe.Add(ref px, i));
        return sum;
    }

    internal static float DotF16Avx512(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xf16)
    {
        ref ushort pw = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(w));
        ref ushort px = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(xf16));
        int n = w.Length / 2, i = 0;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = acc0;
        for (; i + 32 <= n; i += 32)
        {
            (Vector512<uint> wl, Vector512<uint> wh) = Vector512.Widen(Vector512.LoadUnsafe(ref pw, (nuint)i));
            (Vector512<uint> xl, Vector512<uint> xh) = Vector512.Widen(Vector512.LoadUnsafe(ref px, (nuint)i));
            acc0 = Vector512.FusedMultiplyAdd(HalfBits.ToSingle(wl), HalfBits.ToSingle(xl), acc0);
            acc1 = Vector512.FusedMultiplyAdd(HalfBits.ToSingle(wh), HalfBits.ToSingle(xh), acc1);
        }
        float sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += HalfBits.ToSingle(Unsafe.Add(ref pw, i)) * HalfBits.ToSingle(Unsafe.Add(ref px, i));
        return sum;
    }
}
