using Kiln.Tokenizers;
using static Kiln.Tests.Tokenizers.TinyVocabularies;

namespace Kiln.Tests.Tokenizers;

/// <summary>The SentencePiece merge loop on a hand-made vocabulary; expected ids worked out by hand.</summary>
public class SentencePieceTokenizerTests
{
    [Fact]
    public void MergesTheHighestScoringPairFirst()
    {
        // "▁abc": pairs ▁a (-4), ab (-5), bc (-3) -> bc, then ▁a; "▁abc" / "abc" are not tokens.
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece(abScore: -5f, bcScore: -3f));
        Assert.Equal([SpaceA, BC], tokenizer.Encode("abc", addSpecial: false));

        // With ab scoring highest it wins, which leaves ▁ and c alone.
        tokenizer = Tokenizer.Create(SentencePiece(abScore: -1f, bcScore: -3f));
        Assert.Equal([Space, AB, C], tokenizer.Encode("abc", addSpecial: false));
    }

    [Fact]
    public void EqualScoresMergeLeftmostFirst()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece(abScore: -3f, bcScore: -3f));
        Assert.Equal([Space, AB, C], tokenizer.Encode("abc", addSpecial: false));
    }

    [Fact]
    public void AddsBosAndThePrefixSpace()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        Assert.True(tokenizer.AddBos);
        Assert.False(tokenizer.AddEos);
        Assert.True(tokenizer.AddSpacePrefix);
        Assert.Equal([1, SpaceA], tokenizer.Encode("a"));
        Assert.Equal([1], tokenizer.Encode(""));
        Assert.Empty(tokenizer.Encode("", addSpecial: false));
        // spaces inside the text become ▁ too: "▁a▁a"
        Assert.Equal([SpaceA, SpaceA], tokenizer.Encode("a a", addSpecial: false));
    }

    [Fact]
    public void UnknownCharactersFallBackToByteTokens()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        // é is C3 A9 in UTF-8; 🦙 is F0 9F A6 99.
        Assert.Equal([Space, ByteId(0xC3), ByteId(0xA9)], tokenizer.Encode("é", addSpecial: false));
        Assert.Equal([Space, ByteId(0xF0), ByteId(0x9F), ByteId(0xA6), ByteId(0x99), A],
            tokenizer.Encode("🦙a", addSpecial: false));
        Assert.Equal("🦙a", tokenizer.Decode(tokenizer.Encode("🦙a", addSpecial: false)));
    }

    [Fact]
    public void WithoutByteTokensUnknownCharactersBecomeUnk()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece(withBytes: false));
        Assert.Equal([Space, 0, 0, A], tokenizer.Encode("éa", addSpecial: false));
    }

    [Fact]
    public void LoneSurrogatesAreTokenizedAsReplacementCharacters()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        // U+FFFD is EF BF BD
        Assert.Equal([Space, ByteId(0xEF), ByteId(0xBF), ByteId(0xBD), A], tokenizer.Encode("\uD800a", addSpecial: false));
    }

    [Fact]
    public void DecodeDropsOnlyTheAddedPrefixSpace()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        Assert.Equal("a a", tokenizer.Decode([SpaceA, SpaceA]));
        Assert.Equal(" a a", tokenizer.Decode([1, SpaceA, SpaceA])); // llama.cpp keeps the space after a removed BOS
        Assert.Equal("<s> a</s>", tokenizer.Decode([1, SpaceA, 2], skipSpecial: false));
        Assert.Equal(" a", tokenizer.Decode([1, SpaceA, 2]));
        Assert.Equal("ab", tokenizer.Decode([A, B]));
        Assert.Equal("", tokenizer.Decode([]));
    }

    [Fact]
    public void DecodeTokenBytesRendersPieces()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        Span<byte> buffer = stackalloc byte[256];
        Assert.Equal(2, tokenizer.DecodeTokenBytes(SpaceA, buffer));
        Assert.Equal(" a"u8.ToArray(), buffer[..2].ToArray());
        Assert.Equal(1, tokenizer.DecodeTokenBytes(ByteId(0x0A), buffer));
        Assert.Equal((byte)'\n', buffer[0]);
        Assert.Equal(0, tokenizer.DecodeTokenBytes(2, buffer)); // </s> is control
        Assert.Equal(0, tokenizer.DecodeTokenBytes(0, buffer)); // <unk>
        Assert.Equal(4, tokenizer.DecodeTokenBytes(2, buffer, renderSpecial: true));
        Assert.Equal(6, tokenizer.DecodeTokenBytes(Tool, buffer)); // user-defined tokens always render
    }

    [Fact]
    public void BadIdsAndSmallBuffersAreRejected()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.GetTokenText(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.GetTokenType(tokenizer.VocabSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([5, tokenizer.VocabSize]));
        var error = Assert.Throws<ArgumentException>(() => tokenizer.DecodeTokenBytes(ToolCall, new byte[4]));
        Assert.Contains("12 bytes", error.Message);
    }

    [Fact]
    public void ExposesStoredTextAndTypes()
    {
        Tokenizer tokenizer = Tokenizer.Create(SentencePiece());
        Assert.Equal(269, tokenizer.VocabSize);
        Assert.Equal("<0x41>", tokenizer.GetTokenText(ByteId(0x41)));
        Assert.Equal(TokenType.Byte, tokenizer.GetTokenType(ByteId(0x41)));
        Assert.Equal(TokenType.UserDefined, tokenizer.GetTokenType(Tool));
        Assert.Equal(AB, tokenizer.FindToken("ab"));
        Assert.Null(tokenizer.FindToken("abc"));
        Assert.Equal("llama", tokenizer.Model);
    }
}
