namespace Kiln.Tokenizers;

/// <summary>A piece of the input: either a special token found in the text, or a run of plain text to tokenize.</summary>
internal readonly record struct TextFragment(int TokenId, int Offset, int Length)
{
    public bool IsToken => TokenId >= 0;

    public static TextFragment Token(int id) => new(id, 0, 0);

    public static TextFragment Text(int offset, int length) => new(-1, offset, length);
}
