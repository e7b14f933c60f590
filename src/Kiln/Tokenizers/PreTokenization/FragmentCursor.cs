namespace Kiln.Tokenizers.PreTokenization;

/// <summary>
/// Walks one fragment for the hand-written splitters: class queries answer "nothing" outside the fragment
/// (so a lookahead cannot see past it, as in llama.cpp), and <see cref="Emit"/> closes the current word.
/// </summary>
internal ref struct FragmentCursor
{
    private readonly ReadOnlySpan<int> _text;
    private readonly List<int> _result;
    private int _wordStart;

    public FragmentCursor(ReadOnlySpan<int> text, List<int> result)
    {
        _text = text;
        _result = result;
        _wordStart = 0;
    }

    public readonly int Length => _text.Length;

    /// <summary>The code point at <paramref name="pos"/>, or -1 outside the fragment.</summary>
    public readonly int CodepointAt(int pos) => (uint)pos < (uint)_text.Length ? _text[pos] : -1;

    public readonly UnicodeClass ClassAt(int pos) =>
        (uint)pos < (uint)_text.Length ? UnicodeClasses.Of(_text[pos]) : UnicodeClass.None;

    public readonly bool IsLetterAt(int pos) => ClassAt(pos) == UnicodeClass.Letter;

    public readonly bool IsNumberAt(int pos) => ClassAt(pos) == UnicodeClass.Number;

    public readonly bool IsWhitespaceAt(int pos) =>
        (uint)pos < (uint)_text.Length && UnicodeClasses.IsWhitespace(_text[pos]);

    /// <summary><c>[^\s\p{L}\p{N}]</c>, false outside the fragment.</summary>
    public readonly bool IsOtherThanSpaceLetterNumberAt(int pos)
    {
        if ((uint)pos >= (uint)_text.Length)
            return false;
        int cp = _text[pos];
        UnicodeClass cls = UnicodeClasses.Of(cp);
        return cls is not (UnicodeClass.Letter or UnicodeClass.Number) && !UnicodeClasses.IsWhitespace(cp);
    }

    /// <summary>Ends the current word at <paramref name="end"/> (nothing is emitted for an empty word).</summary>
    public void Emit(int end)
    {
        if (end > _wordStart)
            _result.Add(end - _wordStart);
        _wordStart = end;
    }
}
