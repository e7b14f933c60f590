namespace Kiln.Tokenizers.PreTokenization;

/// <summary>
/// Llama-3's pre-tokenizer regex
/// <c>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>,
/// matched by hand as llama.cpp does.
/// </summary>
internal sealed class LlamaThreeWordSplitter : WordSplitter
{
    public override void Split(ReadOnlySpan<int> codepoints, List<int> fragments, List<int> result)
    {
        int start = 0;
        foreach (int length in fragments)
        {
            SplitFragment(codepoints.Slice(start, length), result);
            start += length;
        }
    }

    private static void SplitFragment(ReadOnlySpan<int> text, List<int> result)
    {
        var cursor = new FragmentCursor(text, result);
        int end = text.Length;
        int pos = 0;
        while (pos < end)
        {
            int cp = text[pos];
            UnicodeClass cls = cursor.ClassAt(pos);

            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if (cp == '\'' && pos + 1 < end)
            {
                int next = UnicodeClasses.ToLower(text[pos + 1]);
                if (next is 's' or 't' or 'm' or 'd')
                {
                    pos += 2;
                    cursor.Emit(pos);
                    continue;
                }
                if (pos + 2 < end)
                {
                    int nextNext = UnicodeClasses.ToLower(text[pos + 2]);
                    if ((next == 'r' && nextNext == 'e') || (next == 'v' && nextNext == 'e') || (next == 'l' && nextNext == 'l'))
                    {
                        pos += 3;
                        cursor.Emit(pos);
                        continue;
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if (!(cp == '\r' || cp == '\n' || cls == UnicodeClass.Number))
            {
                if (cls == UnicodeClass.Letter || cursor.IsLetterAt(pos + 1))
                {
                    pos++;
                    while (cursor.IsLetterAt(pos))
                        pos++;
                    cursor.Emit(pos);
                    continue;
                }
            }

            // \p{N}{1,3}
            if (cls == UnicodeClass.Number)
            {
                int groupStart = pos;
                while (cursor.IsNumberAt(pos))
                {
                    pos++;
                    if (pos - groupStart >= 3)
                    {
                        cursor.Emit(pos);
                        groupStart = pos;
                    }
                }
                cursor.Emit(pos);
                continue;
            }

            // ' ?[^\s\p{L}\p{N}]+[\r\n]*' (llama.cpp tests the first code point itself for being in the text)
            int first = cp == ' ' ? pos + 1 : pos;
            if (cursor.IsOtherThanSpaceLetterNumberAt(first) || (first != pos && first >= end))
            {
                pos = first;
                while (cursor.IsOtherThanSpaceLetterNumberAt(pos))
                    pos++;
                while (cursor.CodepointAt(pos) is '\r' or '\n')
                    pos++;
                cursor.Emit(pos);
                continue;
            }

            int spaces = 0;
            int lastLineBreakEnd = 0;
            while (cursor.IsWhitespaceAt(pos + spaces))
            {
                int c = text[pos + spaces];
                if (c is '\r' or '\n')
                    lastLineBreakEnd = pos + spaces + 1;
                spaces++;
            }

            // \s*[\r\n]+
            if (lastLineBreakEnd > 0)
            {
                pos = lastLineBreakEnd;
                cursor.Emit(pos);
                continue;
            }

            // \s+(?!\S)
            if (spaces > 1 && pos + spaces < end)
            {
                pos += spaces - 1;
                cursor.Emit(pos);
                continue;
            }

            // \s+
            if (spaces > 0)
            {
                pos += spaces;
                cursor.Emit(pos);
                continue;
            }

            pos++;
            cursor.Emit(pos);
        }
    }
}
