using Kiln.Formats.Gguf;
using Kiln.Tokenizers;

namespace Kiln.Tests.Tokenizers;

/// <summary>
/// Special-token text in the input, checked against ids from llama.cpp's vectors: llama-spm "Hello world" is
/// [15043 3186], gpt-2 "Hello world" is [15496 995].
/// </summary>
public class SpecialTokenParsingTests
{
    private static Tokenizer Load(string name)
    {
        using var file = GgufFile.Open(TokenizerVectors.VocabPath(name));
        return Tokenizer.FromGguf(file);
    }

    [SharedFact]
    public void SentencePieceControlTokenIsParsedOnlyWhenAsked()
    {
        Tokenizer tokenizer = Load("llama-spm");
        Assert.Equal(2, tokenizer.FindToken("</s>"));

        // Text after a special token gets SentencePiece's prefix space again, as in llama.cpp.
        Assert.Equal([15043, 2, 3186], tokenizer.Encode("Hello</s>world", addSpecial: false, parseSpecial: true));
        Assert.Equal([1, 15043, 2, 3186], tokenizer.Encode("Hello</s>world", addSpecial: true, parseSpecial: true));

        int[] plain = tokenizer.Encode("Hello</s>world", addSpecial: false, parseSpecial: false);
        Assert.DoesNotContain(2, plain);
        Assert.Equal("Hello</s>world", tokenizer.Decode(plain));
    }

    [SharedFact]
    public void BytePairControlTokenIsParsedOnlyWhenAsked()
    {
        Tokenizer tokenizer = Load("gpt-2");
        Assert.Equal([15496, 50256, 995], tokenizer.Encode("Hello<|endoftext|> world", addSpecial: false, parseSpecial: true));
        // As plain text: "<", "|", "end", "of", "text", "|", ">".
        Assert.Equal([27, 91, 437, 1659, 5239, 91, 29], tokenizer.Encode("<|endoftext|>", addSpecial: false, parseSpecial: false));
    }

    [SharedFact]
    public void PhiThreeSpecialTokensSwallowTheWhitespaceAfterThem()
    {
        Tokenizer tokenizer = Load("phi-3");
        Assert.Equal(32007, tokenizer.FindToken("<|end|>"));
        Assert.Equal([15043, 32007, 3186], tokenizer.Encode("Hello<|end|>\n  world", addSpecial: false, parseSpecial: true));
        // "</s>" is a user-defined token in this vocabulary, so it is recognised even without parseSpecial.
        Assert.Equal(TokenType.UserDefined, tokenizer.GetTokenType(2));
        Assert.Equal([15043, 2, 3186], tokenizer.Encode("Hello</s> world", addSpecial: false, parseSpecial: false));
    }

    [SharedFact]
    public void EndOfGenerationIncludesTheTurnTokens()
    {
        Tokenizer phi3 = Load("phi-3");
        Assert.True(phi3.IsEndOfGeneration(32000)); // <|endoftext|>, EOS
        Assert.True(phi3.IsEndOfGeneration(32007)); // <|end|>
        Assert.False(phi3.IsEndOfGeneration(32001)); // <|assistant|>
        Assert.False(phi3.IsEndOfGeneration(15043));
        Assert.False(phi3.IsEndOfGeneration(-1));
        Assert.False(phi3.IsEndOfGeneration(phi3.VocabSize));
        Assert.Equal(32007, phi3.EotId);

        Tokenizer gpt2 = Load("gpt-2");
        Assert.Equal(50256, gpt2.EosId);
        Assert.Equal(50256, gpt2.BosId);
        Assert.False(gpt2.AddBos);
        Assert.Equal([50256], gpt2.EndOfGenerationIds.ToArray());
    }

    [SharedFact]
    public void WordPieceVocabularyIsRejectedClearly()
    {
        using var file = GgufFile.Open(TokenizerVectors.VocabPath("bert-bge"));
        var error = Assert.Throws<NotSupportedException>(() => Tokenizer.FromGguf(file));
        Assert.Contains("'bert'", error.Message);
    }
}
