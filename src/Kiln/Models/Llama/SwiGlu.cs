using System.Numerics.Tensors;

namespace Kiln.Models.Llama;

/// <summary>The feed-forward's gate: silu(gate) · up for one row, as ggml_silu then ggml_mul (two roundings).</summary>
internal static class SwiGlu
{
    public static void Apply(Span<float> gate, ReadOnlySpan<float> up)
    {
        Tensors.Activations.Silu(gate);
        TensorPrimitives.Multiply(gate, up, gate);
    }
}
