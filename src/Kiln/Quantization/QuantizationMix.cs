using Kiln.Tensors;

namespace Kiln.Quantization;

/// <summary>
/// A quantization target as llama-quantize names it: the default weight type, and for the K mixes (Q4_K_M …)
/// the rules of <see cref="QuantizationPlan"/> that give some tensors more bits. <see cref="FileType"/> is
/// llama.cpp's llama_ftype, written to general.file_type.
/// </summary>
public sealed class QuantizationMix
{
    private static readonly QuantizationMix[] All =
    [
        new("Q4_0", GgmlType.Q4_0, 2),
        new("Q4_1", GgmlType.Q4_1, 3),
        new("Q8_0", GgmlType.Q8_0, 7),
        new("Q5_0", GgmlType.Q5_0, 8),
        new("Q5_1", GgmlType.Q5_1, 9),
        new("Q2_K", GgmlType.Q2_K, 10),
        new("Q3_K_S", GgmlType.Q3_K, 11),
        new("Q3_K_M", GgmlType.Q3_K, 12),
        new("Q3_K_L", GgmlType.Q3_K, 13),
        new("Q4_K_S", GgmlType.Q4_K, 14),
        new("Q4_K_M", GgmlType.Q4_K, 15),
        new("Q5_K_S", GgmlType.Q5_K, 16),
        new("Q5_K_M", GgmlType.Q5_K, 17),
        new("Q6_K", GgmlType.Q6_K, 18),
    ];

    // llama-quantize's aliases: the bare K names mean the _M mix.
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Q3_K"] = "Q3_K_M",
        ["Q4_K"] = "Q4_K_M",
        ["Q5_K"] = "Q5_K_M",
    };

    private QuantizationMix(string name, GgmlType defaultType, uint fileType)
    {
        Name = name;
        DefaultType = defaultType;
        FileType = fileType;
    }

    public string Name { get; }

    public GgmlType DefaultType { get; }

    /// <summary>llama.cpp's LLAMA_FTYPE_MOSTLY_* value.</summary>
    public uint FileType { get; }

    public static IReadOnlyList<QuantizationMix> Known => All;

    public static QuantizationMix Q4_K_M => Parse("Q4_K_M");

    /// <summary>Case-insensitive; FormatException listing the known names when <paramref name="name"/> is none of them.</summary>
    public static QuantizationMix Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string canonical = Aliases.GetValueOrDefault(name, name);
        foreach (var mix in All)
        {
            if (string.Equals(mix.Name, canonical, StringComparison.OrdinalIgnoreCase))
                return mix;
        }
        throw new FormatException(
            $"unknown quantization type '{name}'; known: {string.Join(", ", All.Select(m => m.Name))} (Q3_K, Q4_K, Q5_K mean the _M mixes)");
    }

    public override string ToString() => Name;
}
