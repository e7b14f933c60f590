using System.Text;

namespace Kiln.Tokenizers;

/// <summary>
/// Turns a stream of generated token ids into text as it arrives. A token may end in the middle of a UTF-8
/// character (byte-fallback and byte-level tokens often do); those bytes are held back until the character is
/// whole, so every piece returned is complete text. Pieces are rendered as llama.cpp's token_to_piece renders
/// them (no leading-space removal: generated tokens continue a prompt). Not thread-safe; no allocation per token.
/// </summary>
public sealed class Utf8StreamDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _skipSpecial;
    private readonly Decoder _decoder;
    private char[] _chars;

    /// <param name="skipSpecial">Control and unknown tokens produce no text (otherwise their stored text is shown).</param>
    public Utf8StreamDecoder(Tokenizer tokenizer, bool skipSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _skipSpecial = skipSpecial;
        // The default replacement fallback turns bytes that can never complete a character into U+FFFD.
        _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
        _chars = new char[Math.Max(64, tokenizer.MaxPieceBytes + 8)];
    }

    /// <summary>
    /// The text completed by <paramref name="tokenId"/>, possibly empty. The span is valid until the next call.
    /// </summary>
    public ReadOnlySpan<char> Append(int tokenId)
    {
        ReadOnlySpan<byte> piece = _tokenizer.PieceBytes(tokenId, renderSpecial: !_skipSpecial);
        // At most one char per byte plus the up to three bytes held from earlier tokens.
        int written = _decoder.GetChars(piece, _chars, flush: false);
        return _chars.AsSpan(0, written);
    }

    /// <summary>Whatever is still held back: an incomplete character at the end of the stream becomes U+FFFD.</summary>
    public ReadOnlySpan<char> Flush()
    {
        int written = _decoder.GetChars([], _chars, flush: true);
        return _chars.AsSpan(0, written);
    }

    /// <summary>Forgets held-back bytes, to start a new stream.</summary>
    public void Reset() => _decoder.Reset();
}
