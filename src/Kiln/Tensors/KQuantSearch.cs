namespace Kiln.Tensors;

/// <summary>
/// The scale searches behind ggml's reference K-quant quantizers (make_qx_quants, make_q3_quants,
/// make_qkx2_quants in ggml-quants.c), written so that every float operation happens in the same order and
/// single precision as there: llama-quantize output is reproduced byte for byte only if the chosen levels are.
/// </summary>
internal static class KQuantSearch
{
    /// <summary>ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this quantizes to zeros.</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's nearest_int: adding 1.5·2^23 leaves round-to-nearest-even of the value in the low mantissa bits
    /// (valid for |f| ≤ 2^22). Math.Round would agree on ties but not on NaN/overflow, and ggml's bytes come from this.
    /// </summary>
    public static int NearestInt(float f)
    {
        float v = f + 12582912f;
        return (BitConverter.SingleToInt32Bits(v) & 0x007fffff) - 0x00400000;
    }

    /// <summary>
    /// make_qx_quants with rmse_type 1: symmetric levels in [0, 2·nmax), stored biased by nmax; tries 18 scales
    /// around nmax/max and keeps the best weighted fit. The weights are <paramref name="importance"/> when given
    /// (an imatrix), else x².
    /// </summary>
    public static float SymmetricWeighted(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels, ReadOnlySpan<float> importance = default)
    {
        bool weighted = !importance.IsEmpty;
        int n = x.Length;
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }

        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            levels[i] = (sbyte)(l + nmax);
            float w = weighted ? importance[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0)
                continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
                float w = weighted ? importance[i] : x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++)
                    levels[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i]))));
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// make_q3_quants with do_rmse: start from the nmax/max grid, then up to five passes that move single
    /// levels when that improves the x²-weighted least-squares fit. Levels stored biased by nmax.
    /// </summary>
    public static float SymmetricRefined(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        int n = x.Length;
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }

        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            levels[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * levels[i];
                if (slx > 0)
                {
                    float sl2 = suml2 - w * levels[i] * levels[i];
                    int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(x[i] * sl2 / slx)));
                    if (l != levels[i])
                    {
                        slx += w * x[i] * l;
                        sl2 += w * l * l;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (sbyte)l;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0)
                break;
        }
        for (int i = 0; i < n; i++)
            levels[i] = (sbyte)(levels[i] + nmax);
        return suml2 > 0f ? sumlx / suml2 : 0f;
    }

    /// <summary>
    /// make_qkx2_quants: levels 0..nmax with a scale and a (non-positive) offset, value = scale·l + min. Starts
    /// from the min/max grid, then for nstep+1 trial scales fits scale and min by weighted least squares and
    /// keeps the lowest weighted error (absolute when <paramref name="useMad"/>, else squared). Returns the
    /// scale; <paramref name="negMin"/> gets -min, as ggml stores it.
    /// </summary>
    public static float AffineSearch(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float negMin, Span<byte> scratch, float rmin, float rdelta, int nstep, bool useMad)
    {
        int n = x.Length;
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min)
                min = x[i];
            if (x[i] > max)
                max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0)
            min = 0;
        if (max == min)
        {
            levels[..n].Clear();
            negMin = -min;
            return 0f;
        }

        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * (x[i] - min));
            levels[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * levels[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            negMin = -min;
            return scale;
        }

        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(0, Math.Min(nmax, NearestInt(iscale * (x[i] - min))));
                scratch[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float error = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * scratch[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    scratch[..n].CopyTo(levels);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        negMin = -min;
        return scale;
    }

    /// <summary>
    /// make_qp_quants: non-negative values (sub-block scales or mins) to levels 0..nmax with one scale, by an
    /// importance-weighted fit: the max grid and eight scales around it, then up to five passes moving single
    /// levels while the weighted least-squares fit improves. Returns the scale.
    /// </summary>
    public static float NonNegativeWeighted(int nmax, ReadOnlySpan<float> x, Span<byte> levels, ReadOnlySpan<float> weights)
    {
        int n = x.Length;
        float max = 0;
        for (int i = 0; i < n; i++)
            max = Math.Max(max, x[i]);
        if (max == 0)
        {
            levels[..n].Clear();
            return 0f;
        }
        float iscale = nmax / max;
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            // ggml stores the unclamped level in a uint8_t here; it only feeds the first error sum
            int l = NearestInt(iscale * x[i]);
            float diff = x[i] - scale * (byte)l;
            bestError += weights[i] * diff * diff;
        }
        for (int step = -4; step <= 4; step++)
        {
            if (step == 0)
                continue;
            float trial = (0.1f * step + nmax) / max;
            float trialScale = 1 / trial;
            float error = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Min(nmax, NearestInt(trial * x[i]));
                float diff = x[i] - trialScale * l;
                error += weights[i] * diff * diff;
            }
            if (error < bestError)
            {
                bestError = error;
                iscale = trial;
            }
        }
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Min(nmax, NearestInt(iscale * x[i]));
            levels[i] = (byte)l;
            sumlx += weights[i] * x[i] * l;
            suml2 += weights[i] * l * l;
        }
        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = weights[i];
                float slx = sumlx - w * x[i] * levels[i];
                float sl2 = suml2 - w * levels[i] * levels[i];
                if (slx > 0 && sl2 > 0)
                {
                    int l = Math.Min(nmax, NearestInt(x[i] * sl2 / slx));
                    if (l != levels[i])
                    {
                        slx += w * x[i] * l;
                        sl2 += w * l * l;
                        if (slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (byte)l;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0)
                break;
        }
        return sumlx / suml2;
    }

    /// <summary>
    /// The error weights ggml's *_impl quantizers derive from an imatrix: importance · sqrt(σ² + x²), so a column
    /// counts by how much its input matters and, less strongly, by the weight's own size.
    /// </summary>
    public static void ImportanceWeights(ReadOnlySpan<float> importance, ReadOnlySpan<float> x, float sigma2, Span<float> weights)
    {
        for (int i = 0; i < x.Length; i++)
            weights[i] = importance[i] * MathF.Sqrt(sigma2 + x[i] * x[i]);
    }

    /// <summary>Σ x² over a span, in float, in element order (ggml's sum_x2).</summary>
    public static float SumOfSquares(ReadOnlySpan<float> x)
    {
        float s = 0;
        foreach (float v in x)
            s += v * v;
        return s;
    }
}
