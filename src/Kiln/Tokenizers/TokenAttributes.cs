namespace Kiln.Tokenizers;

/// <summary>
/// Behaviour flags of a token (llama.cpp's llama_token_attr). They start from the stored <see cref="TokenType"/>
/// but can gain bits at load time: end-of-generation texts are forced to Control, and some models strip
/// whitespace around their special tokens, which the stored type cannot express.
/// </summary>
[Flags]
internal enum TokenAttributes
{
    Undefined = 0,
    Unknown = 1 << 0,
    Unused = 1 << 1,
    Normal = 1 << 2,
    Control = 1 << 3,
    UserDefined = 1 << 4,
    Byte = 1 << 5,
    Normalized = 1 << 6,
    LStrip = 1 << 7,
    RStrip = 1 << 8,
    SingleWord = 1 << 9,
}

internal static class TokenAttributesOf
{
    public static TokenAttributes FromType(TokenType type) => type switch
    {
        TokenType.Normal => TokenAttributes.Normal,
        TokenType.Unknown => TokenAttributes.Unknown,
        TokenType.Control => TokenAttributes.Control,
        TokenType.UserDefined => TokenAttributes.UserDefined,
        TokenType.Unused => TokenAttributes.Unused,
        TokenType.Byte => TokenAttributes.Byte,
        _ => TokenAttributes.Undefined,
    };
}
