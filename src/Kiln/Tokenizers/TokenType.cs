namespace Kiln.Tokenizers;

/// <summary>The per-token type stored in GGUF's <c>tokenizer.ggml.token_type</c> (llama.cpp's llama_token_type values).</summary>
public enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}
