using Kiln.Tokenizers;
using static Kiln.Tests.Tokenizers.TinyVocabularies;

namespace Kiln.Tests.Tokenizers;

/// <summary>Byte-level BPE merging on a hand-made vocabulary; expected ids worked out by hand.</summary>
public class BytePairTokenizerTests
{
    [Fact]
    public void MergesByRank()
    {
        Tokenizer tokenizer = Tokenizer.Create(BytePair(["a b", "ab c", "\u0120 a"]));
        Assert.Equal([BpeABC], tokenizer.Encode("abc"));

        // "b c" now outranks "a b", and "a bc" is no merge.
        tokenizer = Tokenizer.Create(BytePair(["b c", "a b", "\u0120 a"]));
        Assert.Equal([BpeA, BpeBC], tokenizer.Encode("abc"));
    }

    [Fact]
    public void SpacesAreTheByteAlphabetsCharacter()
    {
        // " ab" is one word "Ġab": "a b" (rank 1) beats "Ġ a" (rank 2), and "Ġ ab" is no merge.
        Tokenizer tokenizer = Tokenizer.Create(BytePair(["b c", "a b", "\u0120 a"]));
        Assert.Equal([BpeSpace, BpeAB], tokenizer.Encode(" ab"));
        Assert.Equal([BpeA, BpeSpaceA], tokenizer.Encode("a a"));
        Assert.Equal(" ab", tokenizer.Decode([BpeSpace, BpeAB]));
    }

    [Fact]
    public void BytesWithoutTokensAreDropped()
    {
        // llama.cpp emits nothing for bytes the vocabulary cannot spell; 'x' and 'é' are not in it.
        Tokenizer tokenizer = Tokenizer.Create(BytePair(["a b"]));
        Assert.Equal([BpeAB], tokenizer.Encode("xabé"));
    }

    [Fact]
    public void DefaultsFollowLlamaCpp()
    {
        Tokenizer tokenizer = Tokenizer.Create(BytePair(["a b"]));
        Assert.False(tokenizer.AddBos);
        Assert.False(tokenizer.AddEos);
        Assert.False(tokenizer.AddSpacePrefix);
        Assert.Equal(-1, tokenizer.UnknownId);
        Assert.Equal([BpeEnd], tokenizer.EndOfGenerationIds.ToArray());
        Assert.Equal("gpt2", tokenizer.Model);
    }

    [Fact]
    public void ControlTokenTextIsParsedOnlyWhenAsked()
    {
        Tokenizer tokenizer = Tokenizer.Create(BytePair(["a b", "\u0120 ."]));
        Assert.Equal([BpeAB, BpeEnd, BpeSpaceDot], tokenizer.Encode("ab<|endoftext|> .", parseSpecial: true));
        Assert.DoesNotContain(BpeEnd, tokenizer.Encode("ab<|endoftext|> .", parseSpecial: false));
        Assert.Equal("ab .", tokenizer.Decode([BpeAB, BpeEnd, BpeSpaceDot]));
        Assert.Equal("ab<|endoftext|> .", tokenizer.Decode([BpeAB, BpeEnd, BpeSpaceDot], skipSpecial: false));
    }

    [Fact]
    public void CleanUpRemovesSpaceBeforePunctuationWhenTheVocabularyAsks()
    {
        Tokenizer gpt2 = Tokenizer.Create(BytePair(["a b"], pre: "gpt-2"));
        Assert.Equal("ab.", gpt2.Decode([BpeAB, BpeSpaceDot], cleanUpSpaces: true));
        Assert.Equal("ab .", gpt2.Decode([BpeAB, BpeSpaceDot]));

        // deepseek-llm does not clean spaces in llama.cpp.
        Tokenizer deepseek = Tokenizer.Create(BytePair(["a b"], pre: "deepseek-llm"));
        Assert.Equal("ab .", deepseek.Decode([BpeAB, BpeSpaceDot], cleanUpSpaces: true));
    }
}
