namespace Kiln.Tokenizers.PreTokenization;

/// <summary>
/// GPT-2's pre-tokenizer regex <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>,
/// matched by hand over Unicode classes as llama.cpp does: its hand-written matcher produced the reference
/// outputs, including its reading of <c>\s+(?!\S)</c> at fragment ends.
/// </summary>
internal sealed class GptTwoWordSplitter : WordSplitter
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

            // 's|'t|'re|'ve|'m|'ll|'d
            if (cp == '\'' && pos + 1 < end)
            {
                int next = text[pos + 1];
                if (next is 's' or 't' or 'm' or 'd')
                {
                    pos += 2;
                    cursor.Emit(pos);
                    continue;
                }
                if (pos + 2 < end)
                {
                    int nextNext = text[pos + 2];
                    if ((next == 'r' && nextNext == 'e') || (next == 'v' && nextNext == 'e') || (next == 'l' && nextNext == 'l'))
                    {
                        pos += 3;
                        cursor.Emit(pos);
                        continue;
                    }
                }
            }

            int first = cp == ' ' ? pos + 1 : pos;

            // ' ?\p{L}+'
            if (cursor.IsLetterAt(first))
            {
                pos = first;
                while (cursor.IsLetterAt(pos))
                    pos++;
                cursor.Emit(pos);
                continue;
            }

            // ' ?\p{N}+'
            if (cursor.IsNumberAt(first))
            {
                pos = first;
                while (cursor.IsNumberAt(pos))
                    pos++;
                cursor.Emit(pos);
                continue;
            }

            // ' ?[^\s\p{L}\p{N}]+'
            if (cursor.IsOtherThanSpaceLetterNumberAt(first))
            {
                pos = first;
                while (cursor.IsOtherThanSpaceLetterNumberAt(pos))
                    pos++;
                cursor.Emit(pos);
                continue;
            }

            int spaces = 0;
            while (cursor.IsWhitespaceAt(pos + spaces))
                spaces++;

            // '\s+(?!\S)': a run followed by more text leaves its last space to start the next word
            if (spaces > 1 && pos + spaces < end)
            {
                pos += spaces - 1;
                cursor.Emit(pos);
                continue;
            }

            // '\s+'
            if (spaces > 0)
            {
                pos += spaces;
                cursor.Emit(pos);
                continue;
            }

            // nothing matched: the character is a word by itself
            pos++;
            cursor.Emit(pos);
        }
    }
}
