using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kiln.Training;

/// <summary>Shape of a model to train. JSON form: {"family":"llama","layers":4,"dim":128,…}.</summary>
public sealed record TrainingConfig
{
    public ModelFamily Family { get; init; } = ModelFamily.Llama;
    public int Layers { get; init; }
    public int Dim { get; init; }
    public int Heads { get; init; }

    /// <summary>KV heads (GQA); 0 means as many as query heads.</summary>
    public int KvHeads { get; init; }

    /// <summary>Feed-forward width; 0 means 4·dim for GPT-2 and the Llama rule (⅔·4·dim rounded up to 32) for Llama.</summary>
    public int Ffn { get; init; }

    public int Vocab { get; init; }

    /// <summary>Longest sequence: the learned position table's size (GPT-2) and the exported context length.</summary>
    public int Context { get; init; }

    public float NormEpsilon { get; init; } = 1e-5f;
    public float RopeFreqBase { get; init; } = 10000f;

    [JsonIgnore]
    public int KvHeadCount => KvHeads == 0 ? Heads : KvHeads;

    [JsonIgnore]
    public int FfnDim => Ffn != 0 ? Ffn : Family == ModelFamily.Gpt2 ? 4 * Dim : (8 * Dim / 3 + 31) / 32 * 32;

    [JsonIgnore]
    public int HeadDim => Dim / Heads;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Parses and validates; unknown keys are errors (a misspelt "kvheads" must not silently mean the default).</summary>
    public static TrainingConfig FromJson(string json, string source = "config")
    {
        TrainingConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<TrainingConfig>(json, Json);
        }
        catch (JsonException e)
        {
            throw new TrainingConfigException($"{source}: {e.Message}");
        }
        if (config is null)
            throw new TrainingConfigException($"{source}: empty configuration");
        config.Validate();
        return config;
    }

    /// <summary>Throws <see cref="TrainingConfigException"/> naming the first thing wrong.</summary>
    public void Validate()
    {
        void Positive(int value, string name)
        {
            if (value <= 0)
                throw new TrainingConfigException($"{name} must be positive (got {value})");
        }
        if (!Enum.IsDefined(Family))
            throw new TrainingConfigException($"unknown model family {Family}");
        Positive(Layers, "layers");
        Positive(Dim, "dim");
        Positive(Heads, "heads");
        Positive(Vocab, "vocab");
        Positive(Context, "context");
        if (KvHeads < 0)
            throw new TrainingConfigException($"kvHeads must be positive, or 0 for as many as heads (got {KvHeads})");
        if (Ffn < 0)
            throw new TrainingConfigException($"ffn must be positive, or 0 for the family's default (got {Ffn})");
        if (Dim % Heads != 0)
            throw new TrainingConfigException($"heads ({Heads}) must divide dim ({Dim})");
        if (Heads % KvHeadCount != 0)
            throw new TrainingConfigException($"kvHeads ({KvHeadCount}) must divide heads ({Heads})");
        if (Family == ModelFamily.Gpt2 && KvHeadCount != Heads)
            throw new TrainingConfigException($"GPT-2 has no grouped KV heads: kvHeads ({KvHeadCount}) must equal heads ({Heads})");
        if (Family == ModelFamily.Llama && HeadDim % 2 != 0)
            throw new TrainingConfigException($"RoPE needs an even head dimension: dim/heads = {HeadDim}");
        if (!(NormEpsilon > 0) || !float.IsFinite(NormEpsilon))
            throw new TrainingConfigException($"normEpsilon must be a positive number (got {NormEpsilon})");
        if (!(RopeFreqBase > 0) || !float.IsFinite(RopeFreqBase))
            throw new TrainingConfigException($"ropeFreqBase must be a positive number (got {RopeFreqBase})");
        long largest = Math.Max((long)Vocab * Dim, (long)FfnDim * Dim * 2);
        if (largest > int.MaxValue / 2)
            throw new TrainingConfigException($"a weight of {largest} elements is beyond what one buffer holds");
    }
}
