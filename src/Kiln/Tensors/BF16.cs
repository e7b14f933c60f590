using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>
/// Kernels for ggml BF16 rows: the upper 16 bits of a float32, little-endian, two bytes per element.
/// To float is a shift; from float rounds to nearest even with NaN forced quiet, as ggml_compute_fp32_to_bf16
/// (subnormals are kept, not flushed). .NET 10 exposes no AVX512-BF16 (vdpbf16ps), so dots widen to float.
/// </summary>
public static class BF16
{
    public const int BlockBytes = 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ToSingle(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ushort FromSingle(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u)
            return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7FFFu + ((u >> 16) & 1))) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> FromSingle(Vector256<float> f)
    {
        Vector256<uint> u = f.AsUInt32();
        Vector256<int> isNan = Vector256.GreaterThan((u & Vector256.Create(0x7FFFFFFFu)).AsInt32(), Vector256.Create(0x7F800000));
        Vector256<uint> rounded = (u + Vector256.Create(0x7FFFu) + ((u >> 16) & Vector256.Create(1u))) >> 16;
        return Vector256.ConditionalSelect(isNan.AsUInt32(), (u >> 16) | Vector256.Create(64u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> FromSingle(Vector512<float> f)
    {
        Vector512<uint> u = f.AsUInt32();
        Vector512<int> isNan = Vector512.GreaterThan((u & Vector512.Create(0x7FFFFFFFu)).AsInt32(), Vector512.Create(0x7F800000));
        Vector512<uint> rounded = (u + Vector512.Create(0x7FFFu) + ((u >> 16) & Vector512.Create(1u))) >> 16;
        return Vector512.ConditionalSelect(isNan.AsUInt32(), (u >> 16) | Vector512.Create(64u), rounded);
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("BF16", 1, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.PreferAvx512)
            DequantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("BF16", 1, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int i = 0; i < dst.Length; i++)
            dst[i] = ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]));
    }

    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("BF16", 1, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (CpuPaths.PreferAvx512)
            QuantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            QuantizeAvx2(src, dst);
        else
            QuantizeScalar(src, dst);
    }

    public static void QuantizeScalar(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("BF16", 1, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int i = 0; i < src.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(dst[(2 * i)..], FromSingle(src[i]));
    }

    /// <summary>BF16 weights row · float activations, accumulated in float.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("BF16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(w, x);
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("BF16", 1, BlockBytes, w.Length, x.Length, nameof(w));
        float sum = 0f;
        for (int i = 0; i < x.Length; i++)
            sum += ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(w[(2 * i)..])) * x[i];
        return sum;
    }

    /// <summary>BF16 weights · BF16 activations (llama.cpp's ggml_vec_dot_bf16), accumulated in float.</summary>
    public static float DotBF16(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xbf16)
    {
        CheckPair(w, xbf16);
        if (CpuPaths.PreferAvx512)
            return DotBF16Avx512(w, xbf16);
        if (CpuPaths.CanAvx2)
            return DotBF16Avx2(w, xbf16);
        return DotBF16Scalar(w, xbf16);
    }

    public static float DotBF16Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xbf16)
    {
        CheckPair(w, xbf16);
        float sum = 0f;
        for (int i = 0; i < w.Length; i += 2)
            sum += ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(w[i..]))
                   * ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(xbf16[i..]));
        return sum;
    }

    private static void CheckPair(ReadOnlySpan<byte> w, ReadOnlySpan<byte> x)
    {
        if (w.Length % BlockBytes != 0)
            throw new ArgumentException($"a BF16 row is 2 bytes per element; {w.Length} bytes is odd", nameof(w));
        RowArguments.CheckSameLength(w.Length, x.Length, "xbf16");
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
            (lo << 16).AsSingle().StoreUnsafe(ref d, (nuint)i);
            (hi << 16).AsSingle().StoreUnsafe(ref d, (nuint)i + 8);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = ToSingle(Unsafe.Add(ref s, i));
    }

    internal static void DequantizeAvx512(ReadOnlySpan<byte> src, Span<float> dst)
    {
        ref ushort s = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(src));
        ref float d = ref MemoryMarshal.GetReference(dst);
        int n = dst.Length, i = 0;
        for (; i + 32 <= n; i += 32)
        {
            (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.LoadUnsafe(ref s, (nuint)i));
            (lo << 16).AsSingle().StoreUnsafe(ref d, (nuint)i);
            (hi << 16).AsSingle().StoreUnsafe(ref d, (nuint)i + 16);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = ToSingle(Unsafe.Add(ref s, i));
    }

    internal static void QuantizeAvx2(ReadOnlySpan<float> src, Span<byte> dst)
    {
        ref float s = ref MemoryMarshal.GetReference(src);
        ref ushort d = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(dst));
        int n = src.Length, i = 0;
        for (; i + 16 <= n; i += 16)
        {
            Vector256<uint> lo = FromSingle(Vector256.LoadUnsafe(ref s, (nuint)i));
            Vector256<uint> hi = FromSingle(Vector256.LoadUnsafe(ref s, (nuint)i + 8));
            Vector256.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = FromSingle(Unsafe.Add(ref s, i));
    }

    internal static void QuantizeAvx512(ReadOnlySpan<float> src, Span<byte> dst)
    {
        ref float s = ref MemoryMarshal.GetReference(src);
        ref ushort d = ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(dst));
        int n = src.Length, i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Vector512<uint> lo = FromSingle(Vector512.LoadUnsafe(ref s, (nuint)i));
            Vector512<uint> hi = FromSingle(Vector512.LoadUnsafe(ref s, (nuint)i + 16));
            Vector512.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = FromSingle(Unsafe.Add(ref s, i));
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
            acc0 = Vector256.FusedMultiplyAdd((lo << 16).AsSingle(), Vector256.LoadUnsafe(ref px, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd((hi << 16).AsSingle(), Vector256.LoadUnsafe(ref px, (nuint)i + 8), acc1);
        }
        float sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += ToSingle(Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
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
            acc0 = Vector512.FusedMultiplyAdd((lo << 16).AsSingle(), Vector512.LoadUnsafe(ref px, (nuint)i), acc0);
            acc1 = Vector512.FusedMultiplyAdd((hi << 16).AsSingle(), Vector512.LoadUnsafe(ref px, (nuint)i + 16), acc1);
        }
        float sum = Vector512.Sum(acc0 + acc1);
        for (; i < n; i++)
            sum += ToSingle(Unsafe.Add(ref pw, i)) * Unsafe.Add(ref px, i);
        return sum;
    }

    // Both sides BF16: a 32-bit lane holds elements 2k (low half) and 2k+1 (high half); shifting the low one up
    // and masking the high one gives both as floats without any shuffle, and the pairing is the same on both sides.
    internal static float DotBF16Avx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xbf16)
    {
        ref uint pw = ref Unsafe.As<byte, uint>(ref MemoryMarshal.GetReference(w));
        ref uint px = ref Unsafe.As<byte, uint>(ref MemoryMarshal.GetReference(xbf16));
        int n = w.Length / 2, i = 0;
        Vector256<uint> highMask = Vector256.Create(0xFFFF0000u);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0;
        for (; i + 16 <= n; i += 16)
        {
            Vector256<uint> wv = Vector256.LoadUnsafe(ref pw, (nuint)(i / 2));
            Vector256<uint> xv = Vector256.LoadUnsafe(ref px, (nuint)(i / 2));
            acc0 = Vector256.FusedMultiplyAdd((wv << 16).AsSingle(), (xv << 16).AsSingle(), acc0);
            acc1 = Vector256.FusedMultiplyAdd((wv & highMask).AsSingle(), (xv & highMask).AsSingle(), acc1);
        }
        float sum = Vector256.Sum(acc0 + acc1);
        ref ushort hw = ref Unsafe.As<uint, ushort>(ref pw);
        ref ushort hx = ref Unsafe.As<uint, ushort>(ref px);
        for (; i < n; i++)
            sum += ToSingle(Unsafe.Add(ref hw, i)) * ToSingle(Unsafe.Add(ref hx, i));
        return sum;
    }

    internal static float DotBF16Avx512(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xbf16)
    {
        ref uint pw = ref Unsafe.As<byte, uint>(ref MemoryMarshal.GetReference(w));
        ref uint px = ref Unsafe.As<byte, uint>(ref MemoryMarshal.GetReference(xbf16));
        int n = w.Length / 2, i = 0;
        Vector512<uint> highMask = Vector512.Create(0xFFFF0000u);
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = acc0;
        for (; i + 32 <= n; i += 32)
        {
            Vector512<uint> wv = Vector512.LoadUnsafe(ref pw, (nuint)(i / 2));
            Vector512<uint> xv = Vector512.LoadUnsafe(ref px, (nuint)(i / 2));
            acc0 = Vector512.FusedMultiplyAdd((wv << 16).AsSingle(), (xv << 16).AsSingle(), acc0);
            acc1 = Vector512.FusedMultiplyAdd((wv & highMask).AsSingle(), (xv & highMask).AsSingle(), acc1);
        }
        float sum = Vector512.Sum(acc0 + acc1);
        ref ushort hw = ref Unsafe.As<uint, ushort>(ref pw);
        ref ushort hx = ref Unsafe.As<uint, ushort>(ref px);
        for (; i < n; i++)
            sum += ToSingle(Unsafe.Add(ref hw, i)) * ToSingle(Unsafe.Add(ref hx, i));
        return sum;
    }
}
