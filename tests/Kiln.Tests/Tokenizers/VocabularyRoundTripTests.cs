using Kiln.Formats.Gguf;
using Kiln.Tokenizers;

namespace Kiln.Tests.Tokenizers;

/// <summary>Decoding inverts encoding, for all the llama.cpp vocabularies that Kiln supports.</summary>
public class VocabularyRoundTripTests
{
    public static TheoryData<string> Vocabularies => new()
    {
        "llama-spm", "phi-3", "baichuan", "gpt-2", "deepseek-llm", "deepseek-coder", "falcon", "starcoder", "mpt",
        "refact", "gpt-neox",
    };

    private static Tokenizer Load(string name)
    {
        using var file = GgufFile.Open(TokenizerVectors.VocabPath(name));
        return Tokenizer.FromGguf(file);
    }

    // baichuan and gpt-neox have no vectors of their own; every .inp file holds the same strings.
    private static IReadOnlyList<string> Inputs() => TokenizerVectors.ReadInputs("llama-spm");

    [SharedTheory]
    [MemberData(nameof(Vocabularies))]
    public void DecodeOfEncodeGivesTheTextBack(string name)
    {
        Tokenizer tokenizer = Load(name);
        var failures = new List<string>();
        foreach (string text in Inputs())
        {
            int[] ids = tokenizer.Encode(text, addSpecial: false);
            string back = tokenizer.Decode(ids);
            if (back != text)
                failures.Add($"{TokenizerVectors.Show(text)} -> [{string.Join(' ', ids)}] -> {TokenizerVectors.Show(back)}");

            // With BOS added and skipped again the text also comes back (SentencePiece's space included in the
            // first piece is then kept, exactly as llama.cpp keeps it).
            int[] withSpecial = tokenizer.Encode(text, addSpecial: true);
            string expected = tokenizer.AddBos && tokenizer.AddSpacePrefix && text.Length > 0 ? " " + text : text;
            string backWithSpecial = tokenizer.Decode(withSpecial);
            if (backWithSpecial != expected)
                failures.Add($"with BOS: {TokenizerVectors.Show(text)} -> {TokenizerVectors.Show(backWithSpecial)}");
        }
        Assert.True(failures.Count == 0, $"{name}:\n" + string.Join("\n", failures));
    }

    [SharedTheory]
    [MemberData(nameof(Vocabularies))]
    public void StreamingDecodeEmitsWholeCharactersAndTheSameText(string name)
    {
        Tokenizer tokenizer = Load(name);
        var stream = new Utf8StreamDecoder(tokenizer);
        foreach (string text in Inputs())
        {
            int[] ids = tokenizer.Encode(text, addSpecial: true);
            stream.Reset();
            var streamed = new System.Text.StringBuilder();
            foreach (int id in ids)
            {
                ReadOnlySpan<char> chunk = stream.Append(id);
                Assert.False(chunk.Contains('\uFFFD'), $"{name}: replacement character streaming {TokenizerVectors.Show(text)}");
                Assert.False(chunk.Length > 0 && char.IsHighSurrogate(chunk[^1]), $"{name}: split surrogate pair");
                streamed.Append(chunk);
            }
            Assert.Equal(0, stream.Flush().Length);
            // Decode keeps the prefix space after a skipped BOS, like token-by-token output does.
            Assert.Equal(tokenizer.Decode(ids), streamed.ToString());
        }
    }

    [SharedTheory]
    [MemberData(nameof(Vocabularies))]
    public void LoadsWithTheSpecialTokensTheFileNames(string name)
    {
        Tokenizer tokenizer = Load(name);
        Assert.True(tokenizer.VocabSize > 30000);
        Assert.InRange(tokenizer.EosId, 0, tokenizer.VocabSize - 1);
        Assert.True(tokenizer.IsEndOfGeneration(tokenizer.EosId));
        Assert.Equal(tokenizer.Model == "llama", tokenizer.AddSpacePrefix);
    }
}
