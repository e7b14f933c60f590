using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Kiln.Models.Llama;

/// <summary>ggml_rms_norm followed by ggml_mul: sum of squares in double, then two float roundings.</summary>
internal static class RmsNorm
{
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float epsilon, Span<float> y)
    {
        double sum = 0;
        foreach (float v in x)
            sum += (double)(v * v);
        Scale(x, sum, weight, epsilon, y);
    }

    /// <summary>
    /// <see cref="Apply"/> for <paramref name="rows"/> consecutive rows of weight.Length each, every row with
    /// exactly <see cref="Apply"/>'s bits. ggml sums a row's squares in one sequential double chain, which runs at
    /// the latency of a double add per element; four rows' chains advance side by side here, so a batch's norms
    /// take about a quarter of the time without changing any row's order.
    /// </summary>
    public static void ApplyRows(ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> weight, float epsilon, Span<float> y)
    {
        int dim = weight.Length;
        if (x.Length < rows * dim || y.Length < rows * dim)
            throw new ArgumentException($"{rows} rows of {dim} are needed");
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            var x0 = x.Slice(r * dim, dim);
            var x1 = x.Slice((r + 1) * dim, dim);
            var x2 = x.Slice((r + 2) * dim, dim);
            var x3 = x.Slice((r + 3) * dim, dim);
            // One double lane per row: each lane's adds are still that row's sequential chain, in order.
            var sums = Vector256<double>.Zero;
            for (int i = 0; i < dim; i++)
            {
                var v = Vector128.Create(x0[i], x1[i], x2[i], x3[i]);
                sums += Vector256.WidenLower(Vector256.Create(v * v, Vector128<float>.Zero));
            }
            double s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
            Scale(x0, s0, weight, epsilon, y.Slice(r * dim, dim));
            Scale(x1, s1, weight, epsilon, y.Slice((r + 1) * dim, dim));
            Scale(x2, s2, weight, epsilon, y.Slice((r + 2) * dim, dim));
            Scale(x3, s3, weight, epsilon, y.Slice((r + 3) * dim, dim));
        }
        for (; r < rows; r++)
            Apply(x.Slice(r * dim, dim), weight, epsilon, y.Slice(r * dim, dim));
    }

    private static void Scale(ReadOnlySpan<float> x, double sumOfSquares, ReadOnlySpan<float> weight, float epsilon, Span<float> y)
    {
        float mean = (float)(sumOfSquares / x.Length);
        float scale = 1f / MathF.Sqrt(mean + epsilon);
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Multiply(y, weight, y);
    }
}
