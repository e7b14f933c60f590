namespace Kiln.Models.Llama;

/// <summary>Which pairs of a head's dimensions RoPE rotates together.</summary>
public enum RopeOrdering
{
    /// <summary>Adjacent pairs (2i, 2i+1): Meta's original Llama layout, llama.cpp's LLAMA_ROPE_TYPE_NORM.</summary>
    Normal,

    /// <summary>Halves (i, i + d/2): GPT-NeoX layout, used by Qwen2, Phi-3, Gemma … (LLAMA_ROPE_TYPE_NEOX).</summary>
    NeoX,
}
