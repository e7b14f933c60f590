using System.Buffers.Binary;

namespace Kiln.Tensors;

/// <summary>
/// The reference quantizer shared by Q4_K and Q5_K (quantize_row_q4_K_ref / quantize_row_q5_K_ref): both
/// store <c>{ half d, dmin; uint8 scales[12]; ... }</c> with eight sub-blocks of 32 and 6-bit scales and mins,
/// and differ only in the level count, the search range and where the quants go (Q5_K adds qh[32]).
/// </summary>
internal static class KQuantAffine
{
    private const int SuperBlock = 256;

    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, int blockBytes, int nmax, float rmin, int nstep)
    {
        Span<byte> levels = stackalloc byte[SuperBlock];
        Span<byte> scratch = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> scales = stackalloc float[8];
        Span<float> mins = stackalloc float[8];
        for (int b = 0; b < src.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = dst.Slice(b * blockBytes, blockBytes);
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < 8; j++)
            {
                ReadOnlySpan<float> sub = x.Slice(32 * j, 32);
                float sumX2 = 0;
                for (int l = 0; l < 32; l++)
                    sumX2 += sub[l] * sub[l];
                float rms = MathF.Sqrt(sumX2 / 32);
                for (int l = 0; l < 32; l++)
                    weights[l] = rms + MathF.Abs(sub[l]);
                scales[j] = KQuantSearch.AffineSearch(nmax, sub, weights, levels.Slice(32 * j, 32), out mins[j], scratch, rmin, 0.1f, nstep, useMad: false);
                if (scales[j] > maxScale)
                    maxScale = scales[j];
                if (mins[j] > maxMin)
                    maxMin = mins[j];
            }

            float invScale = maxScale > 0 ? 63f / maxScale : 0f;
            float invMin = maxMin > 0 ? 63f / maxMin : 0f;
            Span<byte> packed = block.Slice(4, 12);
            for (int j = 0; j < 8; j++)
            {
                // ggml truncates nearest_int to uint8 before the clamp
                int ls = Math.Min(63, (int)(byte)KQuantSearch.NearestInt(invScale * scales[j]));
                int lm = Math.Min(63, (int)(byte)KQuantSearch.NearestInt(invMin * mins[j]));
                if (j < 4)
                {
                    packed[j] = (byte)ls;
                    packed[j + 4] = (byte)lm;
                }
                else
                {
                    packed[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                    packed[j - 4] |= (byte)((ls >> 4) << 6);
                    packed[j] |= (byte)((lm >> 4) << 6);
                }
            }
            ushort d = HalfBits.FromSingle(maxScale / 63f);
            ushort dmin = HalfBits.FromSingle(maxMin / 63f);
            BinaryPrimitives.WriteUInt16LittleEndian(block, d);
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], dmin);

            for (int j = 0; j < 8; j++)
            {
                var (sc, m) = Q4_K.ScaleMin(packed, j);
                float dl = HalfBits.ToSingle(d) * sc;
                if (dl == 0)
                    continue;
                float ml = HalfBits.ToSingle(dmin) * m;
                for (int i = 0; i < 32; i++)
                    levels[32 * j + i] = (byte)Math.Max(0, Math.Min(nmax, KQuantSearch.NearestInt((x[32 * j + i] + ml) / dl)));
            }

            if (nmax == 15)
            {
                Span<byte> qs = block.Slice(16, 128);
                for (int c = 0; c < 4; c++)
                    for (int l = 0; l < 32; l++)
                        qs[32 * c + l] = (byte)(levels[64 * c + l] | (levels[64 * c + 32 + l] << 4));
            }
            else
            {
                // the fifth bit of element 64c + l goes to bit 2c of qh[l], of element 64c + 32 + l to bit 2c + 1
                Span<byte> qh = block.Slice(16, 32);
                Span<byte> qs = block.Slice(48, 128);
                qh.Clear();
                for (int c = 0; c < 4; c++)
                {
                    for (int l = 0; l < 32; l++)
                    {
                        int l1 = levels[64 * c + l], l2 = levels[64 * c + 32 + l];
                        if (l1 > 15)
                        {
                            l1 -= 16;
                            qh[l] |= (byte)(1 << (2 * c));
                        }
                        if (l2 > 15)
                        {
                            l2 -= 16;
                            qh[l] |= (byte)(2 << (2 * c));
                        }
                        qs[32 * c + l] = (byte)(l1 | (l2 << 4));
                    }
                }
            }
        }
    }
}
