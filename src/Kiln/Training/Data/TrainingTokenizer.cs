using System.Text.Json;
using System.Text.Json.Nodes;
using Kiln.Formats.Gguf;

namespace Kiln.Training.Data;

/// <summary>
/// A tokenizer the trainer makes and saves as JSON ({"type": "char" | "bpe", …}), and that export writes into a GGUF
/// so Kiln's inference and llama.cpp tokenize the same way.
/// </summary>
public abstract class TrainingTokenizer
{
    public abstract int VocabSize { get; }
    public abstract int[] Encode(string text);
    public abstract string Decode(ReadOnlySpan<int> ids);
    public abstract string ToJson();

    /// <summary>
    /// Writes tokenizer.ggml.* for a model of <paramref name="modelVocab"/> ≥ VocabSize (extra ids become unused
    /// placeholders), followed by <see cref="GgufExtraTokens"/> tokens of its own.
    /// </summary>
    public abstract void WriteGgufMetadata(GgufWriter writer, int modelVocab);

    /// <summary>
    /// Tokens the GGUF vocabulary carries after the model's ids, which the trained model never saw (byte-fallback
    /// tokens, so llama.cpp can tokenize any text). Export gives them copies of the unknown token's embedding and
    /// output rows (<see cref="GgufExtraTokenRow"/>): a row training always pushed down, and on a tie the lower id wins.
    /// </summary>
    public virtual int GgufExtraTokens => 0;

    /// <summary>The model row the extra tokens copy.</summary>
    public virtual int GgufExtraTokenRow => 0;

    /// <summary>A token to start samples from (a newline when there is one).</summary>
    public abstract int SampleStartId { get; }

    public static TrainingTokenizer Load(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"tokenizer file not found: {path}", path);
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not JSON ({e.Message})");
        }
        string? type = root?["type"]?.GetValue<string>();
        return type switch
        {
            "char" => CharacterTokenizer.FromJson(root!, path),
            "bpe" => ByteLevelBpeTokenizer.FromJson(root!, path),
            _ => throw new InvalidDataException($"{path}: tokenizer type '{type}' is not supported (char, bpe)"),
        };
    }
}
