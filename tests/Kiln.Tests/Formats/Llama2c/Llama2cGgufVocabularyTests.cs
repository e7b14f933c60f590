using Kiln.Formats.Llama2c;

namespace Kiln.Tests.Formats.Llama2c;

public class Llama2cGgufVocabularyTests
{
    [Fact]
    public void AppliesLlamaCppNamingAndTypes()
    {
        byte[][] pieces =
        [
            "<unk>"u8.ToArray(), "\n<s>\n"u8.ToArray(), "\n</s>\n"u8.ToArray(),
            "<0x0A>"u8.ToArray(), "<0xff>"u8.ToArray(), [], " the"u8.ToArray(), "a b "u8.ToArray(),
            "<0x4"u8.ToArray(), "<0xZZ>"u8.ToArray(), "日本"u8.ToArray(),
        ];
        float[] scores = [0f, 0f, 0f, 0f, 0f, -1.5f, -2f, -3f, -4f, -5f, -0f];
        var tok = Llama2cTokenizer.Parse(Llama2cSampleFiles.TokenizerBytes(pieces, scores), pieces.Length);

        var vocab = Llama2cGgufVocabulary.From(tok);

        // Hand-derived from llama.cpp's load_vocab rules: 0/1/2 renamed, byte pattern, empty = control, ' ' -> U+2581.
        Assert.Equal(
            ["<unk>", "<s>", "</s>", "<0x0A>", "<0xff>", "", "\u2581the", "a\u2581b\u2581", "<0x4", "<0xZZ>", "日本"],
            vocab.Tokens);
        Assert.Equal([2, 3, 3, 6, 6, 3, 1, 1, 1, 1, 1], vocab.TokenTypes);
        Assert.Equal(scores, vocab.Scores);
        Assert.True(BitConverter.SingleToInt32Bits(vocab.Scores[10]) < 0, "the sign of -0 survives");
    }

    [Fact]
    public void RejectsInvalidUtf8()
    {
        byte[][] pieces = ["<unk>"u8.ToArray(), [0x0A], [0x0A], [0xC3, 0x28]];
        var tok = Llama2cTokenizer.Parse(Llama2cSampleFiles.TokenizerBytes(pieces, [0f, 0f, 0f, 0f]), 4);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cGgufVocabulary.From(tok));
        Assert.Contains("token 3 is not valid UTF-8", e.Message);
    }

    [SharedFact]
    public void MatchesLlamaCppConversionOfTok512()
    {
        var vocab = Llama2cGgufVocabulary.From(Llama2cTokenizer.Read(SharedData.Path("models", "tok512.bin"), 512));
        using var reference = Kiln.Formats.Gguf.GgufFile.Open(SharedData.Path("models", "stories260K.gguf"));

        Assert.Equal(reference.GetArray("tokenizer.ggml.tokens").AsStrings(), vocab.Tokens);
        Assert.Equal(reference.GetArray("tokenizer.ggml.token_type").AsInt32s(), vocab.TokenTypes);
        float[] scores = reference.GetArray("tokenizer.ggml.scores").AsFloat32s();
        Assert.Equal(scores.Select(BitConverter.SingleToInt32Bits), vocab.Scores.Select(BitConverter.SingleToInt32Bits));
    }
}
