namespace Kiln.Tokenizers.PreTokenization;

/// <summary>
/// Splits text into the words a byte-level BPE merges within: a chain of <see cref="WordSplitter"/> stages,
/// each refining the fragments of the one before (llama.cpp's unicode_regex_split over a regex list).
/// </summary>
internal sealed class PreTokenizer
{
    private readonly WordSplitter[] _stages;

    public PreTokenizer(IReadOnlyList<string> llamaPatterns)
    {
        ArgumentOutOfRangeException.ThrowIfZero(llamaPatterns.Count);
        Patterns = [.. llamaPatterns];
        _stages = llamaPatterns.Select(CreateStage).ToArray();
    }

    /// <summary>The stages' regexes as llama.cpp writes them.</summary>
    public IReadOnlyList<string> Patterns { get; }

    /// <summary>Splits <paramref name="codepoints"/>; <paramref name="words"/> receives the word lengths in order.</summary>
    public void Split(ReadOnlySpan<int> codepoints, List<int> words)
    {
        words.Clear();
        if (codepoints.IsEmpty)
            return;
        var current = new List<int> { codepoints.Length };
        var next = new List<int>();
        foreach (WordSplitter stage in _stages)
        {
            next.Clear();
            stage.Split(codepoints, current, next);
            (current, next) = (next, current);
        }
        words.AddRange(current);
    }

    private static WordSplitter CreateStage(string pattern) => pattern switch
    {
        PreTokenizerPatterns.GptTwo => new GptTwoWordSplitter(),
        PreTokenizerPatterns.LlamaThree => new LlamaThreeWordSplitter(),
        _ => new RegexWordSplitter(pattern),
    };
}
