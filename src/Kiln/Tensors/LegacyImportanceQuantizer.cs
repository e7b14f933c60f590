using System.Buffers.Binary;

namespace Kiln.Tensors;

/// <summary>
/// ggml's quantize_row_q4_0_impl, q4_1_impl, q5_0_impl and q5_1_impl with an imatrix: per block of 32 the
/// rounding error is weighted by importance · sqrt(σ² + x²) (σ² the row's mean square), the symmetric types fit
/// their scale with make_qx_quants and the affine ones scale and min with make_qkx3_quants. Same block layouts
/// as the reference quantizers; only the chosen scales and levels differ.
/// </summary>
internal static class LegacyImportanceQuantizer
{
    private const int Block = 32;

    /// <param name="bits">4 or 5.</param>
    /// <param name="affine">Q4_1/Q5_1 (scale and min) rather than Q4_0/Q5_0 (scale only).</param>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance, int bits, bool affine, int blockBytes)
    {
        if (importance.Length != src.Length)
            throw new ArgumentException($"importance has {importance.Length} values for a row of {src.Length}", nameof(importance));
        Span<float> weights = stackalloc float[Block];
        Span<sbyte> symmetric = stackalloc sbyte[Block];
        Span<byte> levels = stackalloc byte[Block];
        Span<byte> scratch = stackalloc byte[Block];
        float sigma2 = KQuantSearch.SumOfSquares(src) / src.Length;
        int nmax = (1 << bits) - 1;
        for (int b = 0; b < src.Length / Block; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * Block, Block);
            Span<byte> block = dst.Slice(b * blockBytes, blockBytes);
            KQuantSearch.ImportanceWeights(importance.Slice(b * Block, Block), x, sigma2, weights);
            int header;
            if (affine)
            {
                float d = KQuantSearch.AffineSearch(nmax, x, weights, levels, out float negMin, scratch, -0.9f, 0.05f, 36, useMad: false);
                BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
                BinaryPrimitives.WriteUInt16LittleEndian(block[2..], HalfBits.FromSingle(-negMin));
                header = 4;
            }
            else
            {
                float d = KQuantSearch.SymmetricWeighted((nmax + 1) / 2, x, symmetric, weights);
                BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
                for (int j = 0; j < Block; j++)
                    levels[j] = (byte)symmetric[j];
                header = 2;
            }
            if (bits == 4)
            {
                for (int j = 0; j < 16; j++)
                    block[header + j] = (byte)(levels[j] | (levels[j + 16] << 4));
            }
            else
            {
                uint qh = 0;
                for (int j = 0; j < 16; j++)
                {
                    block[header + 4 + j] = (byte)((levels[j] & 0x0F) | ((levels[j + 16] & 0x0F) << 4));
                    qh |= (uint)((levels[j] & 0x10) >> 4) << j;
                    qh |= (uint)((levels[j + 16] & 0x10) >> 4) << (j + 16);
                }
                BinaryPrimitives.WriteUInt32LittleEndian(block[header..], qh);
            }
        }
    }
}
