using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kiln.Training.Data;

/// <summary>
/// Character-level tokenizer (nanoGPT's shakespeare_char): one id per distinct Unicode code point of the training
/// text, in code-point order, after three reserved ids 0, 1, 2 for unknown, begin and end of text. The reserved ids
/// never occur in the data; they exist because a GGUF SentencePiece vocabulary gives ids 0/1/2 those roles when the
/// file names none, so an exported model must not use them for characters. Saved as {"type":"char","symbols":[…]}.
/// </summary>
public sealed class CharacterTokenizer
{
    private readonly string[] _symbols;
    private readonly Dictionary<int, int> _ids;

    public CharacterTokenizer(IEnumerable<string> symbols)
    {
        _symbols = symbols.ToArray();
        _ids = new Dictionary<int, int>(_symbols.Length);
        for (int i = 0; i < _symbols.Length; i++)
        {
            if (!Rune.TryGetRuneAt(_symbols[i], 0, out var rune) || rune.Utf16SequenceLength != _symbols[i].Length)
                throw new InvalidDataException($"symbol {i} is not a single character");
            if (!_ids.TryAdd(rune.Value, ReservedIds + i))
                throw new InvalidDataException($"symbol {i} ('{_symbols[i]}') appears twice");
        }
    }

    /// <summary>Ids before the first character: unknown, begin of text, end of text.</summary>
    public const int ReservedIds = 3;

    public int VocabSize => ReservedIds + _symbols.Length;
    public IReadOnlyList<string> Symbols => _symbols;

    public static CharacterTokenizer FromText(string text) =>
        new(text.EnumerateRunes().Select(r => r.Value).Distinct().Order().Select(v => new Rune(v).ToString()));

    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length);
        foreach (var rune in text.EnumerateRunes())
        {
            if (!_ids.TryGetValue(rune.Value, out int id))
                throw new InvalidDataException($"character U+{rune.Value:X4} is not in the tokenizer's vocabulary");
            ids.Add(id);
        }
        return [.. ids];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder(ids.Length);
        foreach (int id in ids)
            sb.Append((uint)(id - ReservedIds) < (uint)_symbols.Length ? _symbols[id - ReservedIds] : id is >= 0 and < ReservedIds ? "" : "\uFFFD");
        return sb.ToString();
    }

    public string ToJson() =>
        new JsonObject { ["type"] = "char", ["symbols"] = new JsonArray(_symbols.Select(s => (JsonNode)s).ToArray()) }.ToJsonString();

    public static CharacterTokenizer Load(string path)
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
        if (type != "char")
            throw new InvalidDataException($"{path}: tokenizer type '{type}' is not supported (char)");
        var symbols = root!["symbols"]?.AsArray().Select(n => n?.GetValue<string>() ?? "").ToArray()
            ?? throw new InvalidDataException($"{path}: missing symbols");
        return new CharacterTokenizer(symbols);
    }
}
