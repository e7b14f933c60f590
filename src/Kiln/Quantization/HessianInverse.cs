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
            // H = V Vᵀ with V upper triangular (the Cholesky factor of H with rows and columns reversed), so
            // H⁻¹ = V⁻ᵀ V⁻¹ = UᵀU with U = V⁻¹: one factorization and one triangular inverse
            Reverse(h, n);
            if (!CholeskyLower(h, n))
                continue;
            Reverse(h, n);
            return InvertUpper(h, n);
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

    /// <summary>J A J: rows and columns in reverse order (in place).</summary>
    private static void Reverse(double[] a, int n)
    {
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                int ri = n - 1 - i, rj = n - 1 - j;
                if ((long)i * n + j < (long)ri * n + rj)
                    (a[i * n + j], a[ri * n + rj]) = (a[ri * n + rj], a[i * n + j]);
            }
        }
    }

    /// <summary>The inverse of upper-triangular V (row-major), by back substitution row by row from the bottom.</summary>
    private static double[] InvertUpper(double[] v, int n)
    {
        var u = new double[(long)n * n];
        // U V = I, row i of U: U_ii = 1/V_ii, U_ij = -(Σ_{i≤k<j} U_ik V_kj) / V_jj, accumulated row-wise over k
        var row = new double[n];
        for (int i = 0; i < n; i++)
        {
            Array.Clear(row);
            row[i] = 1;
            // row holds e_i − (U_i,<j · V)_j for the j not yet solved; solving left to right
            for (int j = i; j < n; j++)
            {
                double x = row[j] / v[j * n + j];
                u[i * n + j] = x;
                if (x != 0)
                {
                    var tail = row.AsSpan(j + 1, n - j - 1);
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(v.AsSpan(j * n + j + 1, n - j - 1), -x, tail, tail);
                }
            }
        }
        return u;
    }
}
