namespace Kiln.Formats.Llama2c;

/// <summary>
/// The weight arrays of a llama2.c checkpoint, in the order run.c's memory_map_weights lays them out.
/// Per-layer kinds are stored stacked over all layers in the file; <see cref="Llama2cCheckpoint"/> exposes one slice per layer.
/// </summary>
public enum Llama2cWeight
{
    /// <summary>token_embedding_table [vocab, dim].</summary>
    TokenEmbedding,
    /// <summary>rms_att_weight [dim] per layer.</summary>
    AttentionNorm,
    /// <summary>wq [dim, dim] per layer.</summary>
    Query,
    /// <summary>wk [kv_dim, dim] per layer.</summary>
    Key,
    /// <summary>wv [kv_dim, dim] per layer.</summary>
    Value,
    /// <summary>wo [dim, dim] per layer.</summary>
    AttentionOutput,
    /// <summary>rms_ffn_weight [dim] per layer.</summary>
    FeedForwardNorm,
    /// <summary>w1 [hidden, dim] per layer (the SiLU-gated branch).</summary>
    FeedForwardGate,
    /// <summary>w2 [dim, hidden] per layer.</summary>
    FeedForwardDown,
    /// <summary>w3 [hidden, dim] per layer.</summary>
    FeedForwardUp,
    /// <summary>rms_final_weight [dim].</summary>
    FinalNorm,
    /// <summary>wcls [vocab, dim]; present in the file only when the classifier is not shared with the embedding.</summary>
    Classifier,
}
