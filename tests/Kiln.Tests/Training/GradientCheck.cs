namespace Kiln.Tests.Training;

/// <summary>
/// Central finite differences in float64 against an analytic gradient. The ops are generic over the float type,
/// so the code under test runs here in double: the same formulas as training, at a precision where the difference
/// quotient is trustworthy.
/// </summary>
internal static class GradientCheck
{
    /// <summary>
    /// h = 1e-5: the central difference's truncation error is about h²/6·|f'''| ≈ 1e-11 for these smooth,
    /// O(1) functions, and its rounding error about ε·|L|/h ≈ 2e-16·10/1e-5 = 2e-10. So a correct backward agrees
    /// within ~1e-9; the bound 1e-7 + 1e-6·|g| leaves two orders of margin, while a wrong term (a missing factor,
    /// a sign, a dropped path) shows up at 1e-3 or larger.
    /// </summary>
    private const double Step = 1e-5;

    public static double[] Random(int n, int seed, double scale = 1.0)
    {
        var rng = new Random(seed);
        var x = new double[n];
        for (int i = 0; i < n; i++)
            x[i] = (rng.NextDouble() * 2 - 1) * scale;
        return x;
    }

    /// <summary>Σ a·b, the scalar loss most checks use (its gradient with respect to a is b).</summary>
    public static double Weighted(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++)
            s += a[i] * b[i];
        return s;
    }

    /// <summary>Compares analytic[i] with the difference quotient of loss() in x[i], for every i (or every stride-th).</summary>
    public static void Verify(string name, double[] x, double[] analytic, Func<double> loss, int stride = 1)
    {
        Assert.Equal(x.Length, analytic.Length);
        double worst = 0;
        for (int i = 0; i < x.Length; i += stride)
        {
            double v = x[i];
            x[i] = v + Step;
            double plus = loss();
            x[i] = v - Step;
            double minus = loss();
            x[i] = v;
            double numeric = (plus - minus) / (2 * Step);
            double error = Math.Abs(numeric - analytic[i]);
            Assert.True(error <= 1e-7 + 1e-6 * Math.Abs(numeric),
                $"{name}[{i}]: analytic {analytic[i]:R}, finite difference {numeric:R}");
            worst = Math.Max(worst, Math.Abs(analytic[i]));
        }
        // a gradient that is zero everywhere would pass trivially: the inputs are chosen so it is not
        Assert.True(worst > 1e-6, $"{name}: gradient is (nearly) zero everywhere");
    }
}
