using Kiln.Tokenizers;
using static Kiln.Tests.Tokenizers.TinyVocabularies;

namespace Kiln.Tests.Tokenizers;

/// <summary>Defaults, overrides and rejection of unusable tokenizer data.</summary>
public class TokenizerLoadingTests
{
    [Theory]
    [InlineData("bert", "'bert'")]
    [InlineData("t5", "'t5'")]
    [InlineData("rwkv", "'rwkv'")]
    [InlineData("", "missing")]
    [InlineData("mystery", "'mystery'")]
    public void UnsupportedModelsAreRejectedWithOneClearMessage(string model, string mentioned)
    {
        var data = new TokenizerData { Model = model, Tokens = ["a", "b"] };
        var error = Assert.Throws<NotSupportedException>(() => Tokenizer.Create(data));
        Assert.Contains(mentioned, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void UnknownPreTokenizerIsRejected()
    {
        var error = Assert.Throws<NotSupportedException>(() => Tokenizer.Create(BytePair(["a b"], pre: "mystery-pre")));
        Assert.Contains("'mystery-pre'", error.Message);
    }

    [Fact]
    public void MissingPreTokenizerMeansDefault()
    {
        Tokenizer tokenizer = Tokenizer.Create(BytePair(["a b"], pre: null));
        Assert.Equal([BpeAB, BpeDot], tokenizer.Encode("ab."));
    }

    [Fact]
    public void BytePairWithoutMergesIsRejected()
    {
        var data = new TokenizerData { Model = "gpt2", Tokens = ["a", "b"] };
        var error = Assert.Throws<InvalidDataException>(() => Tokenizer.Create(data));
        Assert.Contains("merges", error.Message);
    }

    [Fact]
    public void ShortScoreOrTypeArraysAreRejected()
    {
        Assert.Throws<InvalidDataException>(() => Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = ["a", "b"], Scores = [0f] }));
        Assert.Throws<InvalidDataException>(() => Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = ["a", "b"], TokenTypes = [1] }));
        Assert.Throws<InvalidDataException>(() => Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = [] }));
    }

    [Fact]
    public void AddBosWithoutABosTokenIsRejected()
    {
        // two tokens: the SentencePiece default BOS id 1 exists, EOS id 2 does not
        var ok = Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = ["a", "b"] });
        Assert.Equal(1, ok.BosId);
        Assert.Equal(-1, ok.EosId);
        Assert.Equal(0, ok.UnknownId);
        var error = Assert.Throws<InvalidDataException>(() =>
            Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = ["a", "b"], AddEos = true }));
        Assert.Contains("add_eos_token", error.Message);
    }

    [Fact]
    public void StoredValuesOverrideDefaults()
    {
        var data = SentencePiece();
        Tokenizer tokenizer = Tokenizer.Create(new TokenizerData
        {
            Model = "llama", Tokens = data.Tokens, Scores = data.Scores, TokenTypes = data.TokenTypes,
            BosId = 2, EosId = 1, AddBos = false, AddEos = true, AddSpacePrefix = false, PadId = 0,
            UnknownId = 4_294_967_295, // out of range: the default (0) stays
        });
        Assert.Equal(2, tokenizer.BosId);
        Assert.Equal(1, tokenizer.EosId);
        Assert.Equal(0, tokenizer.PadId);
        Assert.Equal(0, tokenizer.UnknownId);
        Assert.Equal([A, 1], tokenizer.Encode("a"));
        Assert.Equal("a", tokenizer.Decode([A, 1]));
    }

    [Fact]
    public void RepeatedPiecesResolveToTheLastId()
    {
        Tokenizer tokenizer = Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = ["x", "y", "x"], AddBos = false });
        Assert.Equal(2, tokenizer.FindToken("x"));
        Assert.Equal("[EMPTY_1]", Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = ["x", "", "z"] }).GetTokenText(1));
    }
}
