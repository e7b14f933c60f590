using System.Text;

namespace Kiln.Tests.Tokenizers;

/// <summary>Reads llama.cpp's tokenizer test vectors (../shared/tokenizer/*.inp / *.out, see FORMAT.md there).</summary>
internal static class TokenizerVectors
{
    private static readonly byte[] Separator = Encoding.UTF8.GetBytes("\n__ggml_vocab_test__\n");

    public static string VocabPath(string name) => SharedData.Path("tokenizer", $"ggml-vocab-{name}.gguf");

    public static IReadOnlyList<string> ReadInputs(string name)
    {
        byte[] bytes = File.ReadAllBytes(VocabPath(name) + ".inp");
        var strings = new List<string>();
        int pos = 0;
        while (pos < bytes.Length)
        {
            int next = bytes.AsSpan(pos).IndexOf(Separator);
            if (next < 0)
                throw new InvalidDataException($"{name}.inp does not end with the separator");
            strings.Add(new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes, pos, next));
            pos += next + Separator.Length;
        }
        return strings;
    }

    public static IReadOnlyList<int[]> ReadExpected(string name)
    {
        string[] lines = File.ReadAllText(VocabPath(name) + ".out").Split('\n');
        // The file ends with a newline, which leaves one empty trailing entry after the split.
        return lines.Take(lines.Length - 1)
            .Select(line => line.Trim())
            .Select(line => line.Length == 0 ? [] : line.Split(' ').Select(int.Parse).ToArray())
            .ToList();
    }

    public static string Show(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in s)
            sb.Append(c switch { '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", '"' => "\\\"", _ => c.ToString() });
        return sb.Append('"').ToString();
    }
}
