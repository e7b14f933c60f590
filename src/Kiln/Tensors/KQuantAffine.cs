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
        => Quantize(src, dst, blockBytes, nmax, rmin, nstep, default);

    /// <summary>
    /// With <paramref name="importance"/> (one weight per element of the row) this is quantize_row_q4_K_impl /
    /// q5_K_impl: errors weighted by importance · sqrt(σ² + x²), a wider scale search (make_qkx3_quants), and the
    /// 6-bit scales and mins fitted with the sub-blocks' total weights (make_qp_quants) instead of against the largest.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, int blockBytes, int nmax, float rmin, int nstep,
        ReadOnlySpan<float> importance)
    {
        Span<float> subWeights = stackalloc float[8];
        Span<byte> scaleLevels = stackalloc byte[8];
        Span<byte> minLevels = stackalloc byte[8];
        Span<byte> levels = stackalloc byte[SuperBlock];
        Span<byte> scratch = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> scales = stackalloc float[8];
        Span<float> mins = stackalloc float[8];
        for (int b = 0; b < src.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = dst.Slice(b * blockBytes, blockBytes);
            ushort d, dmin;
            Span<byte> packed = block.Slice(4, 12);
            if (!importance.IsEmpty)
            {
                float sigma2 = 2 * KQuantSearch.SumOfSquares(x) / SuperBlock;
                for (int j = 0; j < 8; j++)
                {
                    ReadOnlySpan<float> sub = x.Slice(32 * j, 32);
                    KQuantSearch.ImportanceWeights(importance.Slice(b * SuperBlock + 32 * j, 32), sub, sigma2, weights);
                    float sw = 0;
                    for (int l = 0; l < 32; l++)
                        sw += weights[l];
                    subWeights[j] = sw;
                    scales[j] = KQuantSearch.AffineSearch(nmax, sub, weights, levels.Slice(32 * j, 32), out mins[j], scratch, -0.9f, 0.05f, 36, useMad: false);
                }
                float dBlock = KQuantSearch.NonNegativeWeighted(63, scales, scaleLevels, subWeights);
                float mBlock = KQuantSearch.NonNegativeWeighted(63, mins, minLevels, subWeights);
                Pack(packed, scaleLevels, minLevels);
                d = HalfBits.FromSingle(dBlock);
                dmin = HalfBits.FromSingle(mBlock);
            }
            else
            {
                (d, dmin) = ReferenceScales(x, nmax, rmin, nstep, weights, levels, scratch, scales, mins, scaleLevels, minLevels, packed);
            }
            BinaryPrimitives.WriteUInt16LittleEndian(block, d);
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], dmin);
            WriteLevels(x, block, levels, packed, d, dmin, nmax);
        }
    }

    /// <summary>quantize_row_q4_K_ref's scales: each sub-block's affine fit, then 6 bits against the largest.</summary>
    private static (ushort D, ushort Dmin) ReferenceScales(ReadOnlySpan<float> x, int nmax, float rmin, int nstep, Span<float> weights,
        Span<byte> levels, Span<byte> scratch, Span<float> scales, Span<float> mins, Span<byte> scaleLevels, Span<byte> minLevels, Span<byte> packed)
    {
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
        for (int j = 0; j < 8; j++)
        {
            // ggml truncates nearest_int to uint8 before the clamp
            scaleLevels[j] = (byte)Math.Min(63, (int)(byte)KQuantSearch.NearestInt(invScale * scales[j]));
            minLevels[j] = (byte)Math.Min(63, (int)(byte)KQuantSearch.NearestInt(invMin * mins[j]));
        }
        Pack(packed, scaleLevels, minLevels);
        return (HalfBits.FromSingle(maxScale / 63f), HalfBits.FromSingle(maxMin / 63f));
    }

    /// <summary>The 12-byte scales field: 6-bit scale and min of each of the eight sub-blocks.</summary>
    private static void Pack(Span<byte> packed, ReadOnlySpan<byte> scaleLevels, ReadOnlySpan<byte> minLevels)
    {
        packed.Clear();
        for (int j = 0; j < 8; j++)
        {
            int ls = Math.Min(63, (int)scaleLevels[j]), lm = Math.Min(63, (int)minLevels[j]);
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
    }

    /// <summary>Levels recomputed from the stored (fp16 × 6-bit) scales and mins, then packed (Q5_K adds qh).</summary>
    private static void WriteLevels(ReadOnlySpan<float> x, Span<byte> block, Span<byte> levels, ReadOnlySpan<byte> packed, ushort d, ushort dmin, int nmax)
    {
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
