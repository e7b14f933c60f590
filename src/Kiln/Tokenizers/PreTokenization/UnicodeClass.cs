using System.Globalization;
using System.Text;

namespace Kiln.Tokenizers.PreTokenization;

/// <summary>The Unicode general-category group of a code point, as llama.cpp's unicode tables flag it (\p{L}, \p{N}, …).</summary>
internal enum UnicodeClass : byte
{
    /// <summary>No code point: outside the fragment being split (llama.cpp's all-zero flags).</summary>
    None = 0,
    Number,
    Letter,
    Separator,
    Mark,
    Punctuation,
    Symbol,
    Other,
}

/// <summary>
/// Classifies code points the way llama.cpp's generated unicode-data tables do: one general-category group per
/// code point (unassigned ones count as "other", \p{C}), plus the White_Space property, which for every code point
/// equals .NET's <see cref="Rune.IsWhiteSpace"/>.
/// </summary>
internal static class UnicodeClasses
{
    public static UnicodeClass Of(int codepoint)
    {
        if ((uint)codepoint > 0x10FFFF)
            return UnicodeClass.Other;
        return CharUnicodeInfo.GetUnicodeCategory(codepoint) switch
        {
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber
                => UnicodeClass.Number,
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
                => UnicodeClass.Letter,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
                => UnicodeClass.Separator,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                => UnicodeClass.Mark,
            UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
                or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation
                => UnicodeClass.Punctuation,
            UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
                or UnicodeCategory.OtherSymbol
                => UnicodeClass.Symbol,
            _ => UnicodeClass.Other,
        };
    }

    public static bool IsWhitespace(int codepoint) =>
        Rune.IsValid(codepoint) && Rune.IsWhiteSpace(new Rune(codepoint));

    /// <summary>Simple lower-case mapping (used only to match contractions case-insensitively).</summary>
    public static int ToLower(int codepoint) =>
        Rune.IsValid(codepoint) ? Rune.ToLowerInvariant(new Rune(codepoint)).Value : codepoint;
}
