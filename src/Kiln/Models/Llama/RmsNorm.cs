using System.Numerics.Tensors;

namespace Kiln.Models.Llama;

/// <summary>ggml_rms_norm followed by ggml_mul: sum of squares in double, then two float roundings.</summary>
internal static class RmsNorm
{
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float epsilon, Span<float> y)
    {
        double sum = 0;
        foreach (float v in x)
            sum += (double)(v * v);
        float mean = (float)(sum / x.Length);
        float scale = 1f / MathF.Sqrt(mean + epsilon);
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Multiply(y, weight, y);
    }
}
