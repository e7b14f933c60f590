namespace Kiln.Quantization;

/// <summary>
/// The factor GPTQ works with: the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), so that row i of U holds, scaled
/// by U[i,i], how the error of column i is spread over the columns after it once the earlier ones are fixed.
/// </summary>
public static class HessianInverse
{
    /// <summary>
    /// Damps <paramref name="h"/> (n × n, row-major, symmetric; overwritten) by <paramref name="damp"/> × its mean
    /// diagonal, then returns U. When H is not positive definite even so, the damping is raised tenfold (up to four
    /// times) as a numerically singular H (too few calibration rows) should still quantize.
    /// </summary>
    public static double[] UpperCholeskyOfInverse(double[] h, int n, double damp)
    {
        double mean = 0;
        for (int i = 0; i < n; i++)
            mean += h[i * n + i];
        mean /= n;
        if (!(mean > 0))
            mean = 1;
        var original = (double[])h.Clone();
        for (int attempt = 0; attempt < 5; attempt++, damp = Math.Max(damp * 10, 1e-6))
        {
            Array.Copy(original, h, h.Length);
            for (int i = 0; i < n; i++)
                h[i * n + i] += damp * mean;
            if (!CholeskyLower(h, n))
                continue;
            InvertFromCholesky(h, n);
            if (CholeskyLower(h, n))
            {
                // H⁻¹ = L Lᵀ = UᵀU with U = Lᵀ
                return Transpose(h, n);
            }
        }
        throw new InvalidOperationException("the calibration Hessian is not positive definite even after damping");
    }

    /// <summary>In place: the lower triangle becomes L with H = L Lᵀ (upper triangle zeroed); false if not positive definite.</summary>
    internal static bool CholeskyLower(double[] a, int n)
    {
        for (int j = 0; j < n; j++)
        {
            double d = a[j * n + j];
            for (int k = 0; k < j; k++)
                d -= a[j * n + k] * a[j * n + k];
            if (!(d > 0))
                return false;
            d = Math.Sqrt(d);
            a[j * n + j] = d;
            for (int i = j + 1; i < n; i++)
            {
                double s = a[i * n + j];
                var ri = a.AsSpan(i * n, j);
                var rj = a.AsSpan(j * n, j);
                for (int k = 0; k < j; k++)
                    s -= ri[k] * rj[k];
                a[i * n + j] = s / d;
            }
            for (int i = j + 1; i < n; i++)
                a[j * n + i] = 0;
        }
        return true;
    }

    /// <summary>From L (lower, H = L Lᵀ) in place to H⁻¹ = L⁻ᵀ L⁻¹ (full symmetric).</summary>
    private static void InvertFromCholesky(double[] a, int n)
    {
        // L⁻¹ (lower) by forward substitution, column by column
        var inv = new double[(long)n * n];
        for (int c = 0; c < n; c++)
        {
            inv[c * n + c] = 1 / a[c * n + c];
            for (int i = c + 1; i < n; i++)
            {
                double s = 0;
                for (int k = c; k < i; k++)
                    s += a[i * n + k] * inv[k * n + c];
                inv[i * n + c] = -s / a[i * n + i];
            }
        }
        // (L⁻¹)ᵀ L⁻¹: entry (i, j) = Σ_k≥max(i,j) inv[k,i] inv[k,j]
        for (int i = 0; i < n; i++)
        {
            for (int j = i; j < n; j++)
            {
                double s = 0;
                for (int k = j; k < n; k++)
                    s += inv[k * n + i] * inv[k * n + j];
                a[i * n + j] = a[j * n + i] = s;
            }
        }
    }

    private static double[] Transpose(double[] a, int n)
    {
        var t = new double[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
                t[j * n + i] = a[i * n + j];
        }
        return t;
    }
}
