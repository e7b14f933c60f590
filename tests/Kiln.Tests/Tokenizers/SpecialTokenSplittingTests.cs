using Kiln.Tokenizers;
using static Kiln.Tests.Tokenizers.TinyVocabularies;

namespace Kiln.Tests.Tokenizers;

/// <summary>Special-token recognition and end-of-generation rules on the hand-made SentencePiece vocabulary.</summary>
public class SpecialTokenSplittingTests
{
    [Fact]
    public void UserDefinedTokensAreAlwaysRecognisedLongestFirst()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        // "<tool><call>" beats its prefix "<tool>"; text after a special token gets the prefix space again.
        Assert.Equal([SpaceA, ToolCall, SpaceA], tokenizer.Encode("a<tool><call>a", addSpecial: false));
        Assert.Equal([SpaceA, Tool, SpaceA, Tool], tokenizer.Encode("a<tool>a<tool>", addSpecial: false));
        Assert.Equal([Tool], tokenizer.Encode("<tool>", addSpecial: false));
    }

    [Fact]
    public void ControlTokensNeedParseSpecial()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        Assert.Equal([1, SpaceA, 2, SpaceA], tokenizer.Encode("a</s>a", parseSpecial: true));
        int[] plain = tokenizer.Encode("a</s>a", addSpecial: false);
        Assert.DoesNotContain(2, plain);
        Assert.Equal("a</s>a", tokenizer.Decode(plain));
        // <unk> is an unknown-type token: also only with parseSpecial
        Assert.Equal([SpaceA, 0], tokenizer.Encode("a<unk>", addSpecial: false, parseSpecial: true));
    }

    [Fact]
    public void PhiThreeNamedModelsStripWhitespaceAfterSpecialTokens()
    {
        Tokenizer plain = Tokenizer.Create(SentencePiece());
        Tokenizer phi = Tokenizer.Create(SentencePiece(modelName: "Phi3"));
        // "  a" after the token: kept normally ("▁▁▁a": ▁ ▁ ▁a), stripped for Phi-3 ("▁a")
        Assert.Equal([Tool, Space, Space, SpaceA], plain.Encode("<tool>  a", addSpecial: false));
        Assert.Equal([Tool, SpaceA], phi.Encode("<tool> \n a", addSpecial: false));
        // <s> keeps its following whitespace even for Phi-3
        Assert.Equal([1, Space, SpaceA], phi.Encode("<s> a", addSpecial: false, parseSpecial: true));
    }

    [Fact]
    public void EndOfGenerationTextsBecomeControlTokens()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        Assert.True(tokenizer.IsEndOfGeneration(2));        // EOS
        Assert.True(tokenizer.IsEndOfGeneration(ImEnd));    // "<|im_end|>" by text
        Assert.False(tokenizer.IsEndOfGeneration(1));
        Assert.Equal(ImEnd, tokenizer.EotId);
        Assert.Equal([2, ImEnd], tokenizer.EndOfGenerationIds.ToArray());
        // stored as normal, but treated as control: hidden when decoding, parsed only on request
        Assert.Equal(TokenType.Normal, tokenizer.GetTokenType(ImEnd));
        Assert.Equal(" a", tokenizer.Decode([ImEnd, SpaceA]));
        Assert.Equal([ImEnd], tokenizer.Encode("<|im_end|>", addSpecial: false, parseSpecial: true));
        Assert.DoesNotContain(ImEnd, tokenizer.Encode("<|im_end|>", addSpecial: false));
    }

    [Fact]
    public void AnExplicitEndOfTurnIdWins()
    {
        var data = SentencePiece();
        Tokenizer tokenizer = Tokenizer.Create(new TokenizerData
        {
            Model = data.Model, Tokens = data.Tokens, Scores = data.Scores, TokenTypes = data.TokenTypes, EotId = Tool,
        });
        Assert.Equal(Tool, tokenizer.EotId);
        Assert.True(tokenizer.IsEndOfGeneration(Tool));
        Assert.True(tokenizer.IsEndOfGeneration(ImEnd)); // still end-of-generation by its text
    }
}
