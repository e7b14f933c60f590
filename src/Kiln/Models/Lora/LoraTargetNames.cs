using Kiln.Models.Llama;

namespace Kiln.Models.Lora;

/// <summary>Short names (q,k,v,o,gate,up,down), GGUF tensor names and shapes of <see cref="LoraTarget"/>s.</summary>
public static class LoraTargetNames
{
    public const int Count = 7;

    private static readonly string[] Short = ["q", "k", "v", "o", "gate", "up", "down"];
    private static readonly string[] Gguf = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

    public static IReadOnlyList<LoraTarget> All { get; } = Enum.GetValues<LoraTarget>();

    public static string ShortName(LoraTarget target) => Short[(int)target];

    /// <summary>The base tensor an adapter for <paramref name="target"/> of block <paramref name="layer"/> modifies, e.g. blk.3.attn_q.weight.</summary>
    public static string TensorName(int layer, LoraTarget target) => $"blk.{layer}.{Gguf[(int)target]}.weight";

    /// <summary>Parses a comma-separated list such as "q,v" or "q,k,v,o,gate,up,down".</summary>
    public static LoraTarget[] Parse(string list)
    {
        var result = new List<LoraTarget>();
        foreach (string part in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int i = Array.IndexOf(Short, part.ToLowerInvariant());
            if (i < 0)
                throw new ArgumentException($"unknown LoRA target '{part}' (known: {string.Join(",", Short)})");
            if (!result.Contains((LoraTarget)i))
                result.Add((LoraTarget)i);
        }
        if (result.Count == 0)
            throw new ArgumentException("no LoRA targets given");
        return [.. result];
    }

    /// <summary>Inverse of <see cref="TensorName"/>; false for tensors no target names.</summary>
    public static bool TryParseTensorName(string name, out int layer, out LoraTarget target)
    {
        layer = -1;
        target = default;
        if (!name.StartsWith("blk.", StringComparison.Ordinal) || !name.EndsWith(".weight", StringComparison.Ordinal))
            return false;
        string middle = name["blk.".Length..^".weight".Length];
        int dot = middle.IndexOf('.');
        if (dot <= 0 || !int.TryParse(middle.AsSpan(0, dot), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out layer))
            return false;
        int i = Array.IndexOf(Gguf, middle[(dot + 1)..]);
        if (i < 0)
            return false;
        target = (LoraTarget)i;
        return true;
    }

    /// <summary>(input, output) width of the target's matrix in a model of this shape.</summary>
    public static (int In, int Out) Shape(LlamaConfig c, LoraTarget target) => target switch
    {
        LoraTarget.Query => (c.EmbeddingLength, c.QueryDim),
        LoraTarget.Key or LoraTarget.Value => (c.EmbeddingLength, c.KvDim),
        LoraTarget.Output => (c.QueryDim, c.EmbeddingLength),
        LoraTarget.Gate or LoraTarget.Up => (c.EmbeddingLength, c.FeedForwardLength),
        _ => (c.FeedForwardLength, c.EmbeddingLength),
    };
}
