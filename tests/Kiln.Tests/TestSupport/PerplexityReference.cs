using System.Globalization;
using System.Text.Json;

namespace Kiln.Tests.TestSupport;

/// <summary>
/// One llama-perplexity run from ../shared/refs (-c 128 -b 128 -t 2 on corpus/tinystories_ppl.txt):
/// its final estimate, the running value it printed after each chunk ("[i]x", %.4f) and, where
/// recorded, llama-tokenize's token count of the text (BOS included).
/// </summary>
public sealed record PerplexityReference(string ModelPath, double Perplexity, double Uncertainty, string[] PrintedChunks, int? TokenCount)
{
    public const int ContextLength = 128;

    public static string TextPath => SharedData.Path("corpus", "tinystories_ppl.txt");

    public int Chunks => PrintedChunks.Length;

    /// <summary>The value printed after chunk <paramref name="number"/> (1-based).</summary>
    public double RunningValue(int number)
    {
        string printed = PrintedChunks[number - 1];
        return double.Parse(printed.AsSpan(printed.IndexOf(']') + 1), CultureInfo.InvariantCulture);
    }

    /// <summary>stories260K (refs/perplexity_refs.json).</summary>
    public static PerplexityReference Stories()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "perplexity_refs.json")));
        return From(doc.RootElement, SharedData.Path("models", "stories260K.gguf"));
    }

    /// <summary>The random tiny256 model or one of its quantizations (refs/quant/quant_refs.json), by file name.</summary>
    public static PerplexityReference Quant(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "quant", "quant_refs.json")));
        var output = doc.RootElement.GetProperty("outputs").EnumerateArray()
            .Single(o => o.GetProperty("file").GetString() == file);
        return From(output.GetProperty("perplexity"), SharedData.Path("refs", "quant", file));
    }

    private static PerplexityReference From(JsonElement e, string modelPath) => new(
        modelPath,
        e.GetProperty("final_ppl").GetDouble(),
        e.GetProperty("final_ppl_error").GetDouble(),
        e.GetProperty("per_chunk_printed").EnumerateArray().Select(p => p.GetString()!).ToArray(),
        e.TryGetProperty("n_tokens_with_bos", out var n) ? n.GetInt32() : null);
}
