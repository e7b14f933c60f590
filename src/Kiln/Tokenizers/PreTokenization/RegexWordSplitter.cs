using System.Text;
using System.Text.RegularExpressions;

namespace Kiln.Tokenizers.PreTokenization;

/// <summary>
/// A pre-tokenizer stage given as a regex in llama.cpp's dialect, run the way llama.cpp runs it with std::regex:
/// the text is first mapped to one character per code point, and matches and the gaps between them both become
/// fragments.
/// <para>
/// A regex that uses Unicode classes (<c>\p{L}</c>, <c>\p{N}</c>, <c>\p{P}</c>, <c>\p{M}</c>, <c>\p{S}</c>) runs on
/// llama.cpp's "collapsed" text: ASCII stays itself, non-ASCII whitespace becomes \v, and every other non-ASCII code
/// point becomes one placeholder character per class, with each <c>\p{…}</c> rewritten to that placeholder plus the
/// class's ASCII members. Any other regex runs on the code points themselves (non-ASCII whitespace still becomes \v);
/// code points beyond the BMP, which .NET would split into two UTF-16 units, become one of two sentinel characters
/// according to whether the regex's own character classes name them.
/// </para>
/// </summary>
internal sealed class RegexWordSplitter : WordSplitter
{
    private const char OtherPlaceholder = '\u00D0';
    private const char NumberPlaceholder = '\u00D1';
    private const char LetterPlaceholder = '\u00D2';
    private const char PunctuationPlaceholder = '\u00D3';
    private const char MarkPlaceholder = '\u00D4';
    private const char SymbolPlaceholder = '\u00D5';

    // Unpaired surrogates never occur in the mapped text otherwise, so they are safe sentinels.
    private const char NamedSupplementary = '\uD800';
    private const char OtherSupplementary = '\uD801';

    private static readonly (string Name, string Members)[] CategoryClasses =
    [
        // Same ASCII members as llama.cpp's table (its symbol list lacks '~', kept for fidelity).
        (@"\p{N}", NumberPlaceholder + "0-9"),
        (@"\p{L}", LetterPlaceholder + "A-Za-z"),
        (@"\p{P}", PunctuationPlaceholder + @"!-#%-*,-/:-;?-@\[-\]_\{\}"),
        (@"\p{M}", MarkPlaceholder.ToString()),
        (@"\p{S}", SymbolPlaceholder + @"\$\+<->\^`\|"),
        (@"\p{Lu}", LetterPlaceholder + "A-Za-z"),
        (@"\p{Ll}", LetterPlaceholder + "A-Za-z"),
        (@"\p{Lt}", LetterPlaceholder + "A-Za-z"),
        (@"\p{Lm}", LetterPlaceholder + "A-Za-z"),
        (@"\p{Lo}", LetterPlaceholder + "A-Za-z"),
    ];

    private readonly Regex _regex;
    private readonly bool _collapsed;
    private readonly (int First, int Last)[] _namedSupplementaryRanges;

    public RegexWordSplitter(string llamaPattern)
    {
        Pattern = llamaPattern;
        _collapsed = CategoryClasses.Any(c => llamaPattern.Contains(c.Name, StringComparison.Ordinal));
        var ranges = new List<(int, int)>();
        string pattern = _collapsed ? TranslateCollapsed(llamaPattern) : TranslateWide(llamaPattern, ranges);
        _namedSupplementaryRanges = [.. ranges];
        _regex = new Regex(pattern, RegexOptions.CultureInvariant);
    }

    /// <summary>The regex as llama.cpp writes it.</summary>
    public string Pattern { get; }

    public override void Split(ReadOnlySpan<int> codepoints, List<int> fragments, List<int> result)
    {
        char[] mapped = System.Buffers.ArrayPool<char>.Shared.Rent(Math.Max(codepoints.Length, 1));
        try
        {
            for (int i = 0; i < codepoints.Length; i++)
                mapped[i] = _collapsed ? Collapse(codepoints[i]) : Widen(codepoints[i]);

            int start = 0;
            foreach (int length in fragments)
            {
                ReadOnlySpan<char> fragment = mapped.AsSpan(start, length);
                int previousEnd = 0;
                foreach (ValueMatch match in _regex.EnumerateMatches(fragment))
                {
                    if (match.Length == 0)
                        continue;
                    if (match.Index > previousEnd)
                        result.Add(match.Index - previousEnd);
                    result.Add(match.Length);
                    previousEnd = match.Index + match.Length;
                }
                if (previousEnd < length)
                    result.Add(length - previousEnd);
                start += length;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<char>.Shared.Return(mapped);
        }
    }

    private static char Collapse(int cp)
    {
        if (cp < 128)
            return (char)cp;
        if (UnicodeClasses.IsWhitespace(cp))
            return '\v';
        return UnicodeClasses.Of(cp) switch
        {
            UnicodeClass.Number => NumberPlaceholder,
            UnicodeClass.Letter => LetterPlaceholder,
            UnicodeClass.Punctuation => PunctuationPlaceholder,
            UnicodeClass.Mark => MarkPlaceholder,
            UnicodeClass.Symbol => SymbolPlaceholder,
            _ => OtherPlaceholder,
        };
    }

    private char Widen(int cp)
    {
        if (cp > 0x7F && UnicodeClasses.IsWhitespace(cp))
            return '\v';
        if (cp <= 0xFFFF)
            return (char)cp;
        foreach (var (first, last) in _namedSupplementaryRanges)
            if (cp >= first && cp <= last)
                return NamedSupplementary;
        return OtherSupplementary;
    }

    private static string TranslateCollapsed(string pattern)
    {
        foreach (Rune r in pattern.EnumerateRunes())
            if (r.Value >= 128)
                throw new NotSupportedException($"pre-tokenizer regex mixes Unicode classes and non-ASCII characters: {pattern}");

        var sb = new StringBuilder(pattern.Length * 2);
        bool inClass = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            bool escaped = i > 0 && pattern[i - 1] == '\\';
            if (c == '[' && !escaped)
            {
                sb.Append('[');
                inClass = true;
                continue;
            }
            if (inClass && c == ']' && !escaped)
            {
                sb.Append(']');
                inClass = false;
                continue;
            }
            if (c == '\\' && i + 3 < pattern.Length && pattern[i + 1] == 'p' && pattern[i + 2] == '{')
            {
                int close = pattern.IndexOf('}', i + 3);
                if (close >= 0)
                {
                    string name = pattern[i..(close + 1)];
                    string? members = CategoryClasses.FirstOrDefault(k => k.Name == name).Members;
                    if (members is not null)
                    {
                        sb.Append(inClass ? members : "[" + members + "]");
                        i = close;
                        continue;
                    }
                }
            }
            AppendOutsideEscapes(sb, pattern, ref i, inClass);
        }
        return sb.ToString();
    }

    private static string TranslateWide(string pattern, List<(int, int)> namedSupplementary)
    {
        var sb = new StringBuilder(pattern.Length * 2);
        bool inClass = false;
        bool classNamesSupplementary = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            bool escaped = i > 0 && pattern[i - 1] == '\\';
            if (c == '[' && !escaped)
            {
                sb.Append('[');
                inClass = true;
                classNamesSupplementary = false;
                continue;
            }
            if (inClass && c == ']' && !escaped)
            {
                sb.Append(']');
                inClass = false;
                continue;
            }
            if (char.IsHighSurrogate(c) && i + 1 < pattern.Length)
            {
                if (!inClass)
                    throw new NotSupportedException($"pre-tokenizer regex has a character beyond the BMP outside a class: {pattern}");
                int first = char.ConvertToUtf32(c, pattern[i + 1]);
                int last = first;
                i++;
                if (i + 2 < pattern.Length && pattern[i + 1] == '-' && char.IsHighSurrogate(pattern[i + 2]))
                {
                    last = char.ConvertToUtf32(pattern[i + 2], pattern[i + 3]);
                    i += 3;
                }
                namedSupplementary.Add((first, last));
                if (!classNamesSupplementary)
                {
                    sb.Append(NamedSupplementary);
                    classNamesSupplementary = true;
                }
                continue;
            }
            AppendOutsideEscapes(sb, pattern, ref i, inClass);
        }
        return sb.ToString();
    }

    /// <summary>
    /// Copies one pattern character, adapting the ECMAScript meanings .NET reads differently: <c>$</c> (end of
    /// input only, where .NET would also match before a final newline).
    /// </summary>
    private static void AppendOutsideEscapes(StringBuilder sb, string pattern, ref int i, bool inClass)
    {
        char c = pattern[i];
        if (c == '\\' && i + 1 < pattern.Length)
        {
            sb.Append(c).Append(pattern[i + 1]);
            i++;
            return;
        }
        if (c == '$' && !inClass)
        {
            sb.Append(@"\z");
            return;
        }
        sb.Append(c);
    }
}
