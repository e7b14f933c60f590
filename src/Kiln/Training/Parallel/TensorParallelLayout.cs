using Kiln.Distributed;

namespace Kiln.Training.Parallel;

/// <summary>
/// Megatron-LM's split of one model over <see cref="Ranks"/> tensor-parallel ranks: which weights are cut along
/// which axis (<see cref="ShardOf"/>) and the per-rank widths the blocks compute with. Attention is split by heads
/// (each rank owns Heads/T query heads and KvHeads/T KV heads, so GQA groups never straddle ranks), the MLP by hidden
/// units; QKV and up/gate (GPT-2: c_fc) are column-parallel, the attention output and down (GPT-2: c_proj)
/// row-parallel. Norms, embeddings, the output head and the row-parallel biases are replicated. With one rank this
/// is the single-process model.
/// </summary>
public sealed class TensorParallelLayout
{
    public TensorParallelLayout(TrainingConfig config, int ranks)
    {
        config.Validate();
        // the same check, and the same message, as a launch with --tp gets
        (ParallelLayout.Single with { Tp = ranks }).Validate(config, ranks, batch: 1);
        Config = config;
        Ranks = ranks;
    }

    public TrainingConfig Config { get; }
    public int Ranks { get; }

    /// <summary>Query heads on each rank.</summary>
    public int Heads => Config.Heads / Ranks;

    /// <summary>KV heads on each rank.</summary>
    public int KvHeads => Config.KvHeadCount / Ranks;

    /// <summary>MLP hidden units on each rank.</summary>
    public int Ffn => Config.FfnDim / Ranks;

    /// <summary>Width of a rank's attention output, the input of its slice of the output projection.</summary>
    public int AttentionDim => Heads * Config.HeadDim;

    /// <summary>Width of a rank's fused Q, K, V projection output.</summary>
    public int QkvDim => (Heads + 2 * KvHeads) * Config.HeadDim;

    /// <summary>How the parameter of this name is split; names are the training models' (GGUF's for Llama, GPT-2's own).</summary>
    public TensorShard ShardOf(string name)
    {
        int hd = Config.HeadDim, c = Config.Dim, f = Config.FfnDim;
        int q = Config.Heads * hd, kv = Config.KvHeadCount * hd;
        return Config.Family switch
        {
            ModelFamily.Llama => Suffix(name) switch
            {
                "attn_qkv.weight" => TensorShard.Output(q, kv, kv),
                "attn_output.weight" => TensorShard.Input(q),
                "ffn_gate_up.weight" => TensorShard.Output(f, f),
                "ffn_down.weight" => TensorShard.Input(f),
                _ => TensorShard.Replicated,
            },
            ModelFamily.Gpt2 => Suffix(name) switch
            {
                "attn.c_attn.weight" or "attn.c_attn.bias" => TensorShard.Output(c, c, c),
                "attn.c_proj.weight" => TensorShard.Input(c),
                "mlp.c_fc.weight" or "mlp.c_fc.bias" => TensorShard.Output(f),
                "mlp.c_proj.weight" => TensorShard.Input(f),
                // attn.c_proj.bias and mlp.c_proj.bias are added once, after the partial products are summed
                _ => TensorShard.Replicated,
            },
            _ => throw new TrainingConfigException($"unknown model family {Config.Family}"),
        };
    }

    /// <summary>A block tensor's name without its "blk.N." / "h.N." prefix; other names unchanged.</summary>
    private static string Suffix(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal) && !name.StartsWith("h.", StringComparison.Ordinal))
            return name;
        int layerEnd = name.IndexOf('.', name.IndexOf('.') + 1);
        return layerEnd < 0 ? name : name[(layerEnd + 1)..];
    }
}
