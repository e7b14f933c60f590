namespace Kiln.Tokenizers.PreTokenization;

/// <summary>
/// One stage of llama.cpp's pre-tokenizer (one entry of its regex list). The text is a sequence of code points
/// already cut into consecutive fragments; a stage cuts every fragment further, never across fragment boundaries,
/// and keeps the text between matches as fragments of its own, so the pieces always cover the whole text.
/// </summary>
internal abstract class WordSplitter
{
    /// <param name="codepoints">The whole text.</param>
    /// <param name="fragments">Lengths (in code points) of the current consecutive fragments.</param>
    /// <param name="result">Receives the lengths of the refined fragments.</param>
    public abstract void Split(ReadOnlySpan<int> codepoints, List<int> fragments, List<int> result);
}
