using System.Text;
using Kiln.Tokenizers.PreTokenization;

namespace Kiln.Tests.Tokenizers;

/// <summary>Word splitting, checked against hand-applied regexes.</summary>
public class PreTokenizerTests
{
    private static string[] Split(IReadOnlyList<string> patterns, string text)
    {
        int[] codepoints = text.EnumerateRunes().Select(r => r.Value).ToArray();
        var lengths = new List<int>();
        new PreTokenizer(patterns).Split(codepoints, lengths);
        var words = new List<string>();
        int start = 0;
        foreach (int length in lengths)
        {
            var sb = new StringBuilder();
            foreach (int cp in codepoints.AsSpan(start, length))
                sb.Append(char.ConvertFromUtf32(cp));
            words.Add(sb.ToString());
            start += length;
        }
        Assert.Equal(text, string.Concat(words)); // the pieces always cover the text
        return [.. words];
    }

    [Fact]
    public void GptTwoSplitsWordsNumbersPunctuationAndSpaces()
    {
        Assert.Equal(["Hello", " world", " ", " foo", "'s", " 123", "!!"],
            Split([PreTokenizerPatterns.GptTwo], "Hello world  foo's 123!!"));
        // a trailing run of spaces stays whole; "\s+(?!\S)" only gives up a space when text follows
        Assert.Equal(["a", "  "], Split([PreTokenizerPatterns.GptTwo], "a  "));
        Assert.Equal(["\n", " é中文", " ١٢", "!?", " \t"], Split([PreTokenizerPatterns.GptTwo], "\n é中文 ١٢!? \t"));
    }

    [Fact]
    public void LlamaThreeGroupsDigitsByThreeAndKeepsLineBreaksTogether()
    {
        Assert.Equal(["Hello", " ", "123", "45", " world", "\n\n", " ", " x", "'RE"],
            Split([PreTokenizerPatterns.LlamaThree], "Hello 12345 world\n\n  x'RE"));
    }

    [Fact]
    public void StagesRefineEachOthersFragments()
    {
        // "default": punctuation runs first, then GPT-2 inside the rest, then digit runs, then groups of three.
        Assert.Equal(["a", "...", "b", " ", "123", "45"], Split(PreTokenizerPatterns.Default, "a...b 12345"));
        Assert.Equal(["1", "2", "3", " x"], Split(PreTokenizerPatterns.StarCoder, "123 x"));
    }

    [Fact]
    public void UnicodeClassesRunOnCollapsedText()
    {
        // \p{L} covers non-ASCII letters; \p{P} non-ASCII punctuation
        Assert.Equal([" ñandú", "«", "ok", "»"], Split(PreTokenizerPatterns.DeepSeekCoder, " ñandú«ok»"));
    }

    [Fact]
    public void LiteralClassesReachBeyondTheBasicPlane()
    {
        // DeepSeek-LLM's letter class names Deseret (U+10400..) but not emoji, so "a𐐀𐐁" is a word apart from
        // the emoji; its next stage ("[!-/:-~…]+", whose ":-~" spans ASCII letters) then cuts the "a" off again.
        Assert.Equal(["a", "𐐀𐐁", "🦙", " b"], Split(PreTokenizerPatterns.DeepSeekLlm, "a𐐀𐐁🦙 b"));
        Assert.Equal(["a𐐀𐐁", "🦙"], Split(PreTokenizerPatterns.DeepSeekLlm[..2], "a𐐀𐐁🦙"));
    }

    [Fact]
    public void DollarMeansEndOfFragmentOnly()
    {
        // "\s+$": trailing spaces of a fragment; .NET's plain '$' would also match before a final newline.
        var splitter = new RegexWordSplitter(@"\s+$");
        var result = new List<int>();
        int[] text = "a \nb  ".EnumerateRunes().Select(r => r.Value).ToArray();
        splitter.Split(text, [text.Length], result);
        Assert.Equal([4, 2], result);
    }

    /// <summary>
    /// The hand-written GPT-2 matcher and the same regex (plus llama.cpp's implied trailing "\s+") run by the
    /// regex engine on collapsed text are two independent implementations; on random text they must agree.
    /// </summary>
    [Fact]
    public void HandWrittenGptTwoAgreesWithTheRegexEngine()
    {
        string[] alphabet = ["a", "b", "Z", " ", " ", "\n", "\t", "1", "7", "!", "'", "s", "t", "é", "中", "١", "🦙", "-", "\u00A0"];
        var random = new Random(1234);
        var custom = new PreTokenizer([PreTokenizerPatterns.GptTwo]);
        var regex = new RegexWordSplitter(PreTokenizerPatterns.GptTwo + @"|\s+");
        for (int trial = 0; trial < 2000; trial++)
        {
            var sb = new StringBuilder();
            int length = random.Next(0, 24);
            for (int i = 0; i < length; i++)
                sb.Append(alphabet[random.Next(alphabet.Length)]);
            int[] cps = sb.ToString().EnumerateRunes().Select(r => r.Value).ToArray();

            var expected = new List<int>();
            if (cps.Length > 0)
                regex.Split(cps, [cps.Length], expected);
            var actual = new List<int>();
            custom.Split(cps, actual);
            Assert.True(expected.SequenceEqual(actual),
                $"{TokenizerVectors.Show(sb.ToString())}: regex [{string.Join(',', expected)}] vs hand-written [{string.Join(',', actual)}]");
        }
    }
}
