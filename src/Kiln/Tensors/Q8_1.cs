using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q8_1: blocks of 32 values stored as <c>{ ggml_half d; ggml_half s; int8 qs[32]; }</c> (36 bytes),
/// value = d * qs[i], and s = d * sum(qs). It exists as an activation format: the Q4_1 and Q5_1 dots need the
/// block sum of the activations for their offset term, and s carries it precomputed. ggml itself has no weight
/// kernels for it. The quantizer is ggml's quantize_row_q8_1_ref bit for bit: the same rounding as Q8_0, and s
/// is the integer sum times the unrounded float scale, rounded to fp16 once.
/// </summary>
public static class Q8_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 36;

    /// <summary>Expands blocks to floats (scalar: nothing reads Q8_1 rows in bulk).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q8_1", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < BlockSize; j++)
                o[j] = d * (sbyte)block[4 + j];
        }
    }

    /// <summary>ggml's quantize_row_q8_1_ref; the SIMD paths produce the same bytes for every finite input.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_1", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (CpuPaths.PreferAvx512)
            QuantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            QuantizeAvx2(src, dst);
        else
            QuantizeScalar(src, dst);
    }

    public static void QuantizeScalar(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_1", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = MathF.Abs(x[j]);
                amax = amax > v ? amax : v; // ggml's MAX macro, operand order kept
            }
            float d = amax / 127f;
            float id = d != 0f ? 1.0f / d : 0f;
            int sum = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                sbyte q = (sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
                block[4 + j] = (byte)q;
                sum += q;
            }
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], HalfBits.FromSingle(sum * d));
        }
    }

    // ---- SIMD paths: callers have checked the lengths. ----

    internal static unsafe void QuantizeAvx2(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = src.Length / BlockSize;
        Vector256<int> order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        fixed (float* x0 = src)
        fixed (byte* o0 = dst)
        {
            float* x = x0;
            byte* o = o0;
            for (int b = 0; b < blocks; b++, x += BlockSize, o += BlockBytes)
            {
                Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8);
                Vector256<float> v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
                // max is order-independent for finite values, so the tree reduction equals ggml's running MAX
                Vector256<float> m = Vector256.MaxNative(
                    Vector256.MaxNative(Vector256.Abs(v0), Vector256.Abs(v1)),
                    Vector256.MaxNative(Vector256.Abs(v2), Vector256.Abs(v3)));
                float d = Q8_0.HorizontalMax(m) / 127f;
                float id = d != 0f ? 1.0f / d : 0f;
                Vector256<float> vid = Vector256.Create(id);
                Vector256<int> i0 = Vector256.ConvertToInt32Native(Q8_0.RoundHalfAwayFromZero(v0 * vid));
                Vector256<int> i1 = Vector256.ConvertToInt32Native(Q8_0.RoundHalfAwayFromZero(v1 * vid));
                Vector256<int> i2 = Vector256.ConvertToInt32Native(Q8_0.RoundHalfAwayFromZero(v2 * vid));
                Vector256<int> i3 = Vector256.ConvertToInt32Native(Q8_0.RoundHalfAwayFromZero(v3 * vid));
                // |x * id| never exceeds 127.5, so the saturating packs below change nothing and the
                // sum of the 32-bit lanes is the sum of the stored bytes
                int sum = Vector256.Sum((i0 + i1) + (i2 + i3));
                Unsafe.WriteUnaligned(o, HalfBits.FromSingle(d));
                Unsafe.WriteUnaligned(o + 2, HalfBits.FromSingle(sum * d));
                // packs work within 128-bit lanes; the dword permute puts the 4-byte groups back in order
                Vector256<sbyte> packed = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
                Avx2.PermuteVar8x32(packed.AsInt32(), order).AsSByte().Store((sbyte*)(o + 4));
            }
        }
    }

    internal static unsafe void QuantizeAvx512(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = src.Length / BlockSize;
        fixed (float* x0 = src)
        fixed (byte* o0 = dst)
        {
            float* x = x0;
            byte* o = o0;
            for (int b = 0; b < blocks; b++, x += BlockSize, o += BlockBytes)
            {
                Vector512<float> v0 = Vector512.Load(x), v1 = Vector512.Load(x + 16);
                Vector512<float> m = Vector512.MaxNative(Vector512.Abs(v0), Vector512.Abs(v1));
                float d = Q8_0.HorizontalMax(Vector256.MaxNative(m.GetLower(), m.GetUpper())) / 127f;
                float id = d != 0f ? 1.0f / d : 0f;
                Vector512<float> vid = Vector512.Create(id);
                Vector512<int> i0 = Vector512.ConvertToInt32Native(Q8_0.RoundHalfAwayFromZero(v0 * vid));
                Vector512<int> i1 = Vector512.ConvertToInt32Native(Q8_0.RoundHalfAwayFromZero(v1 * vid));
                int sum = Vector512.Sum(i0 + i1);
                Unsafe.WriteUnaligned(o, HalfBits.FromSingle(d));
                Unsafe.WriteUnaligned(o + 2, HalfBits.FromSingle(sum * d));
                Avx512F.ConvertToVector128SByteWithSaturation(i0).Store((sbyte*)(o + 4));
                Avx512F.ConvertToVector128SByteWithSaturation(i1).Store((sbyte*)(o + 20));
            }
        }
    }
}
