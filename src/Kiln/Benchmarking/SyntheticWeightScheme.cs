using Kiln.Tensors;

namespace Kiln.Benchmarking;

/// <summary>
/// Which stored type each weight of a synthetic model gets: one type for every matrix (as llama-quantize
/// --pure writes), or llama.cpp's Q4_K_M mix. Norms and biases are always F32, as in llama.cpp's files.
/// The types offered are those the compute kernels support, so the list grows with the kernels.
/// </summary>
public sealed class SyntheticWeightScheme
{
    public const string Q4KMName = "q4_k_m";

    private readonly GgmlType? _uniform;

    private SyntheticWeightScheme(string name, GgmlType? uniform)
    {
        Name = name;
        _uniform = uniform;
    }

    /// <summary>Every matrix in <paramref name="type"/>, whether or not the kernels support it yet (see <see cref="UnsupportedTypesFor"/>).</summary>
    public static SyntheticWeightScheme Uniform(GgmlType type) => new(GgmlTypeTraits.Name(type), type);

    /// <summary>llama.cpp's Q4_K_M mix, whether or not the kernels support Q4_K and Q6_K yet.</summary>
    public static SyntheticWeightScheme Q4KM { get; } = new(Q4KMName, null);

    /// <summary>The --type name: a ggml type name (f16, q8_0 …) or q4_k_m.</summary>
    public string Name { get; }

    /// <summary>Names accepted now: every type both the kernels and the random-weight generator handle, and q4_k_m once Q4_K and Q6_K are supported.</summary>
    public static IReadOnlyList<string> AvailableNames
    {
        get
        {
            var names = Enum.GetValues<GgmlType>().Where(IsUsable).Select(GgmlTypeTraits.Name).ToList();
            if (IsUsable(GgmlType.Q4_K) && IsUsable(GgmlType.Q6_K))
                names.Add(Q4KMName);
            return names;
        }
    }

    /// <summary>
    /// The scheme for <paramref name="name"/>. ArgumentException for a name that is no type at all,
    /// NotSupportedException for a real type Kiln cannot compute with yet.
    /// </summary>
    public static SyntheticWeightScheme Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string key = name.Trim().ToLowerInvariant();
        string available = string.Join(", ", AvailableNames);
        if (key == Q4KMName)
        {
            var missing = new[] { GgmlType.Q4_K, GgmlType.Q6_K }.Where(t => !IsUsable(t)).Select(GgmlTypeTraits.Name).ToList();
            if (missing.Count > 0)
                throw new NotSupportedException($"type {Q4KMName} needs {string.Join(" and ", missing)} weights, which Kiln does not support yet (available: {available})");
            return Q4KM;
        }
        foreach (var type in Enum.GetValues<GgmlType>())
        {
            if (GgmlTypeTraits.Name(type) != key)
                continue;
            if (!IsUsable(type))
                throw new NotSupportedException($"type {key} is not supported yet (available: {available})");
            return Uniform(type);
        }
        throw new ArgumentException($"unknown weight type '{name}' (available: {available})", nameof(name));
    }

    /// <summary>
    /// The stored type of a 2-D weight: <paramref name="tensorName"/> as in GGUF ("blk.3.attn_v.weight"),
    /// <paramref name="layer"/> its block index (-1 outside the blocks), <paramref name="columns"/> its row length.
    /// </summary>
    public GgmlType TypeOf(SyntheticModelShape shape, string tensorName, int layer, long columns)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(tensorName);
        GgmlType type = _uniform ?? Q4KMType(shape, tensorName, layer);
        if (columns % GgmlTypeTraits.BlockSize(type) == 0)
            return type;
        GgmlType fallback = Fallback(type);
        return columns % GgmlTypeTraits.BlockSize(fallback) == 0 ? fallback : GgmlType.F16;
    }

    /// <summary>Types <see cref="TypeOf"/> gives for any weight of <paramref name="shape"/> that the kernels cannot run yet.</summary>
    public IReadOnlyList<GgmlType> UnsupportedTypesFor(SyntheticModelShape shape)
    {
        var used = new HashSet<GgmlType>();
        foreach (var (name, layer, columns, _) in WeightMatrices(shape))
            used.Add(TypeOf(shape, name, layer, columns));
        return used.Where(t => !IsUsable(t)).OrderBy(t => t).ToList();
    }

    /// <summary>The 2-D weights of <paramref name="shape"/> in file order: name, block index (-1 outside), columns, rows.</summary>
    public static IEnumerable<(string Name, int Layer, int Columns, int Rows)> WeightMatrices(SyntheticModelShape shape)
    {
        int d = shape.EmbeddingLength;
        yield return ("token_embd.weight", -1, d, shape.VocabSize);
        if (!shape.TiedEmbeddings)
            yield return ("output.weight", -1, d, shape.VocabSize);
        for (int l = 0; l < shape.BlockCount; l++)
        {
            string p = $"blk.{l}.";
            yield return (p + "attn_q.weight", l, d, shape.QueryDim);
            yield return (p + "attn_k.weight", l, d, shape.KvDim);
            yield return (p + "attn_v.weight", l, d, shape.KvDim);
            yield return (p + "attn_output.weight", l, shape.QueryDim, d);
            yield return (p + "ffn_gate.weight", l, d, shape.FeedForwardLength);
            yield return (p + "ffn_up.weight", l, d, shape.FeedForwardLength);
            yield return (p + "ffn_down.weight", l, shape.FeedForwardLength, d);
        }
    }

    private static bool IsUsable(GgmlType type) => RowKernels.Supports(type) && RandomWeightGenerator.CanGenerate(type);

    /// <summary>
    /// llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M (llama_tensor_get_type): Q4_K by default; Q6_K for the classifier
    /// (the token embedding when it doubles as one) and for attn_v and ffn_down in the layers use_more_bits picks.
    /// </summary>
    private static GgmlType Q4KMType(SyntheticModelShape shape, string name, int layer)
    {
        bool classifier = name == "output.weight" || (shape.TiedEmbeddings && name == "token_embd.weight");
        if (classifier)
            return GgmlType.Q6_K;
        if (layer >= 0 && (name.EndsWith(".attn_v.weight", StringComparison.Ordinal) || name.EndsWith(".ffn_down.weight", StringComparison.Ordinal))
            && UseMoreBits(layer, shape.BlockCount))
            return GgmlType.Q6_K;
        return GgmlType.Q4_K;
    }

    /// <summary>The first and last eighth of the layers, and every third one between them.</summary>
    private static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>llama.cpp's substitutes when a row is not a whole number of super-blocks (tensor_type_fallback).</summary>
    private static GgmlType Fallback(GgmlType type) => type switch
    {
        GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
        GgmlType.Q4_K => GgmlType.Q5_0,
        GgmlType.Q5_K => GgmlType.Q5_1,
        GgmlType.Q6_K => GgmlType.Q8_0,
        _ => GgmlType.F16,
    };
}
