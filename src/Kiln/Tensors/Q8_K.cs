using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q8_K, the activation type of the K-quant dots: blocks of 256 values stored as
/// <c>{ float d; int8 qs[256]; int16 bsums[16]; }</c> (292 bytes), value = d * qs[i], bsums[j] the sum of
/// qs[16j .. 16j+15]. The quantizer is ggml's quantize_row_q8_K_ref bit for bit (llama.cpp's x86 CPU backend
/// uses that reference for activations too). The K-quant dots use bsums for their min and offset terms, so
/// they expect blocks made here.
/// </summary>
public static class Q8_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 292;
    internal const int QsOffset = 4;
    internal const int BsumsOffset = 4 + 256;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q8_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q8_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = BinaryPrimitives.ReadSingleLittleEndian(block);
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < BlockSize; j++)
                o[j] = d * (sbyte)block[QsOffset + j];
        }
    }

    /// <summary>
    /// ggml's quantize_row_q8_K_ref: the first value of largest magnitude maps to -127 exactly
    /// (d = max / -127), the rest round half to even and clamp at 127. An all-zero block stores d = 0 and zero
    /// quants and sums (ggml leaves its bsums unwritten there).
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (CpuPaths.CanAvx2)
            QuantizeAvx2(src, dst);
        else
            QuantizeScalar(src, dst);
    }

    public static void QuantizeScalar(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0f, max = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                float ax = MathF.Abs(x[j]);
                if (ax > amax)
                {
                    amax = ax;
                    max = x[j];
                }
            }
            if (amax == 0f)
            {
                block.Clear();
                continue;
            }
            float iscale = -127f / max;
            for (int j = 0; j < BlockSize; j++)
            {
                // ggml's nearest_int adds 1.5 * 2^23, which rounds half to even
                int v = (int)MathF.Round(iscale * x[j], MidpointRounding.ToEven);
                block[QsOffset + j] = (byte)(sbyte)Math.Min(127, v);
            }
            for (int j = 0; j < BlockSize / 16; j++)
            {
                int sum = 0;
                for (int i = 0; i < 16; i++)
                    sum += (sbyte)block[QsOffset + 16 * j + i];
                BinaryPrimitives.WriteInt16LittleEndian(block[(BsumsOffset + 2 * j)..], (short)sum);
            }
            BinaryPrimitives.WriteSingleLittleEndian(block, 1f / iscale);
        }
    }

    // ---- SIMD paths: callers have checked the lengths. ----

    internal static unsafe void DequantizeAvx2(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = dst.Length / BlockSize;
        fixed (byte* s0 = src)
        fixed (float* o0 = dst)
        {
            byte* s = s0;
            float* o = o0;
            for (int b = 0; b < blocks; b++, s += BlockBytes, o += BlockSize)
            {
                Vector256<float> d = Vector256.Create(Unsafe.ReadUnaligned<float>(s));
                sbyte* q = (sbyte*)(s + QsOffset);
                for (int j = 0; j < BlockSize; j += 8)
                    (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + j))).Store(o + j);
            }
        }
    }

    internal static unsafe void QuantizeAvx2(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = src.Length / BlockSize;
        Vector256<int> order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        Vector256<sbyte> bias = Vector256.Create(sbyte.MinValue);
        fixed (float* x0 = src)
        fixed (byte* o0 = dst)
        {
            float* x = x0;
            byte* o = o0;
            for (int b = 0; b < blocks; b++, x += BlockSize, o += BlockBytes)
            {
                Vector256<float> m = Vector256.Abs(Vector256.Load(x));
                for (int j = 8; j < BlockSize; j += 8)
                    m = Vector256.MaxNative(m, Vector256.Abs(Vector256.Load(x + j)));
                float amax = Q8_0.HorizontalMax(m);
                if (amax == 0f)
                {
                    new Span<byte>(o, BlockBytes).Clear();
                    continue;
                }
                // the scalar loop keeps the first element reaching the largest magnitude
                Vector256<float> va = Vector256.Create(amax);
                int first = 0;
                while (true)
                {
                    uint hits = Vector256.Equals(Vector256.Abs(Vector256.Load(x + first)), va).ExtractMostSignificantBits();
                    if (hits != 0)
                    {
                        first += BitOperations.TrailingZeroCount(hits);
                        break;
                    }
                    first += 8;
                }
                float iscale = -127f / x[first];
                Vector256<float> vs = Vector256.Create(iscale);
                short* bsums = (short*)(o + BsumsOffset);
                for (int j = 0; j < BlockSize; j += 32)
                {
                    // cvtps2dq rounds half to even under the default MXCSR, as nearest_int does; the saturating
                    // packs are the MIN(127, v) (nothing reaches -129)
                    Vector256<int> i0 = Avx.ConvertToVector256Int32(Vector256.Load(x + j) * vs);
                    Vector256<int> i1 = Avx.ConvertToVector256Int32(Vector256.Load(x + j + 8) * vs);
                    Vector256<int> i2 = Avx.ConvertToVector256Int32(Vector256.Load(x + j + 16) * vs);
                    Vector256<int> i3 = Avx.ConvertToVector256Int32(Vector256.Load(x + j + 24) * vs);
                    Vector256<sbyte> packed = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
                    Vector256<sbyte> q = Avx2.PermuteVar8x32(packed.AsInt32(), order).AsSByte();
                    q.Store((sbyte*)(o + QsOffset + j));
                    // psadbw sums 8 bytes as unsigned: bias them by 128, then take 16 * 128 back off per group of 16
                    Vector256<long> sad = Avx2.SumAbsoluteDifferences((q ^ bias).AsByte(), Vector256<byte>.Zero).AsInt64();
                    bsums[j / 16] = (short)(sad.GetElement(0) + sad.GetElement(1) - 2048);
                    bsums[j / 16 + 1] = (short)(sad.GetElement(2) + sad.GetElement(3) - 2048);
                }
                Unsafe.WriteUnaligned(o, 1f / iscale);
            }
        }
    }
}
