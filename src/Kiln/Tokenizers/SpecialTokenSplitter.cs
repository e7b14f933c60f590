namespace Kiln.Tokenizers;

/// <summary>
/// Finds special tokens written out in the input and cuts the text around them (llama.cpp's tokenizer_st_partition).
/// Tokens are tried longest first; each one is searched in every plain-text fragment still left. User-defined
/// tokens are always matched; control and unknown ones only when the caller asks to parse special tokens.
/// </summary>
internal sealed class SpecialTokenSplitter
{
    private readonly IReadOnlyList<string> _texts;
    private readonly TokenAttributes[] _attributes;
    private readonly int[] _candidates;

    /// <param name="candidates">Ids of control, user-defined and unknown tokens, longest text first.</param>
    public SpecialTokenSplitter(IReadOnlyList<string> texts, TokenAttributes[] attributes, int[] candidates)
    {
        _texts = texts;
        _attributes = attributes;
        _candidates = candidates;
    }

    public List<TextFragment> Split(string text, bool parseSpecial)
    {
        var fragments = new List<TextFragment>();
        if (text.Length == 0)
            return fragments;
        fragments.Add(TextFragment.Text(0, text.Length));

        List<TextFragment>? rebuilt = null;
        foreach (int id in _candidates)
        {
            TokenAttributes attributes = _attributes[id];
            if (!parseSpecial && (attributes & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0)
                continue;
            string token = _texts[id];
            if (!OccursInText(text, fragments, token))
                continue;

            rebuilt ??= new List<TextFragment>(fragments.Count + 4);
            rebuilt.Clear();
            foreach (TextFragment fragment in fragments)
            {
                if (fragment.IsToken)
                    rebuilt.Add(fragment);
                else
                    CutAround(text, fragment, id, token, attributes, rebuilt);
            }
            (fragments, rebuilt) = (rebuilt, fragments);
        }
        return fragments;
    }

    private static bool OccursInText(string text, List<TextFragment> fragments, string token)
    {
        foreach (TextFragment fragment in fragments)
            if (!fragment.IsToken && text.AsSpan(fragment.Offset, fragment.Length).IndexOf(token, StringComparison.Ordinal) >= 0)
                return true;
        return false;
    }

    private static void CutAround(string text, TextFragment fragment, int id, string token, TokenAttributes attributes, List<TextFragment> output)
    {
        int offset = fragment.Offset;
        int length = fragment.Length;
        while (true)
        {
            int found = length == 0 ? -1 : text.AsSpan(offset, length).IndexOf(token, StringComparison.Ordinal);
            if (found < 0)
            {
                if (length > 0)
                    output.Add(TextFragment.Text(offset, length));
                return;
            }
            int match = offset + found;

            int leftLength = match - offset;
            if ((attributes & TokenAttributes.LStrip) != 0)
                while (leftLength > 0 && IsAsciiSpace(text[offset + leftLength - 1]))
                    leftLength--;
            if (leftLength > 0)
                output.Add(TextFragment.Text(offset, leftLength));

            output.Add(TextFragment.Token(id));

            int rightOffset = match + token.Length;
            int rightLength = offset + length - rightOffset;
            if (rightLength <= 0)
                return;
            if ((attributes & TokenAttributes.RStrip) != 0)
                while (rightLength > 0 && IsAsciiSpace(text[rightOffset]))
                {
                    rightOffset++;
                    rightLength--;
                }
            offset = rightOffset;
            length = rightLength;
        }
    }

    // C's isspace in the "C" locale, which is what llama.cpp strips with.
    private static bool IsAsciiSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
}
