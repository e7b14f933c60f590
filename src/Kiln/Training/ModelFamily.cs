namespace Kiln.Training;

/// <summary>The decoder-only families the trainer builds.</summary>
public enum ModelFamily
{
    /// <summary>LayerNorm, GELU, learned positions, biases, output tied to the token embedding.</summary>
    Gpt2,

    /// <summary>RMSNorm, RoPE, SwiGLU, grouped KV heads, no biases, untied output.</summary>
    Llama,
}
