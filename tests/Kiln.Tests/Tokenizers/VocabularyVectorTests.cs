using Kiln.Formats.Gguf;
using Kiln.Tokenizers;

namespace Kiln.Tests.Tokenizers;

/// <summary>Every test string of llama.cpp's vocabularies must tokenize to exactly the ids llama.cpp (and HF) give.</summary>
public class VocabularyVectorTests
{
    public static TheoryData<string> Vocabularies => new()
    {
        "llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder", "falcon", "starcoder", "mpt", "refact",
    };

    [SharedTheory]
    [MemberData(nameof(Vocabularies))]
    public void EncodesEveryTestStringExactlyAsLlamaCpp(string name)
    {
        using var file = GgufFile.Open(TokenizerVectors.VocabPath(name));
        Tokenizer tokenizer = Tokenizer.FromGguf(file);
        IReadOnlyList<string> inputs = TokenizerVectors.ReadInputs(name);
        IReadOnlyList<int[]> expected = TokenizerVectors.ReadExpected(name);
        Assert.Equal(46, inputs.Count); // FORMAT.md: every .inp holds the same 46 strings
        Assert.Equal(inputs.Count, expected.Count);

        var mismatches = new List<string>();
        for (int i = 0; i < inputs.Count; i++)
        {
            int[] actual = tokenizer.Encode(inputs[i], addSpecial: false, parseSpecial: false);
            if (!actual.SequenceEqual(expected[i]))
                mismatches.Add($"{TokenizerVectors.Show(inputs[i])}\n  expected [{string.Join(' ', expected[i])}]\n  actual   [{string.Join(' ', actual)}]");
        }
        Assert.True(mismatches.Count == 0, $"{name}: {mismatches.Count} of {inputs.Count} strings differ:\n" + string.Join("\n", mismatches));
    }
}
