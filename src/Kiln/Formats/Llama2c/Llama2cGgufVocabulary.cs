using System.Text;

namespace Kiln.Formats.Llama2c;

/// <summary>
/// A llama2.c vocabulary restated the way llama.cpp's llama-convert-llama2c-to-ggml stores it in GGUF
/// (tokenizer.ggml.tokens / scores / token_type):
/// ids 0, 1, 2 are renamed "&lt;unk&gt;", "&lt;s&gt;", "&lt;/s&gt;" (llama2.c stores "\n&lt;s&gt;\n" and "\n&lt;/s&gt;\n" for BOS/EOS)
/// and typed unknown / control / control; an empty piece is control; "&lt;0xHH&gt;" is a byte token; everything else is normal;
/// and every ' ' becomes U+2581 ("▁"), SentencePiece's whitespace mark, which llama2.c's exporter had decoded to a space.
/// </summary>
public sealed class Llama2cGgufVocabulary
{
    // llama.cpp's llama_token_type values as stored in tokenizer.ggml.token_type.
    public const int TypeNormal = 1;
    public const int TypeUnknown = 2;
    public const int TypeControl = 3;
    public const int TypeByte = 6;

    public const int UnknownTokenId = 0;
    public const int BosTokenId = 1;
    public const int EosTokenId = 2;

    // Strict UTF-8: llama2.c's exporter writes piece.encode("utf-8"), so anything else means a corrupt file,
    // and silently substituting U+FFFD would change the vocabulary.
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public string[] Tokens { get; }

    public float[] Scores { get; }

    public int[] TokenTypes { get; }

    private Llama2cGgufVocabulary(string[] tokens, float[] scores, int[] tokenTypes)
    {
        Tokens = tokens;
        Scores = scores;
        TokenTypes = tokenTypes;
    }

    public static Llama2cGgufVocabulary From(Llama2cTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int count = tokenizer.Count;
        var tokens = new string[count];
        var scores = new float[count];
        var types = new int[count];
        for (int id = 0; id < count; id++)
        {
            ReadOnlySpan<byte> piece = tokenizer.GetPiece(id);
            string text;
            try
            {
                text = StrictUtf8.GetString(piece);
            }
            catch (DecoderFallbackException e)
            {
                throw new Llama2cFormatException($"llama2.c tokenizer: token {id} is not valid UTF-8.", e);
            }

            int type;
            switch (id)
            {
                case UnknownTokenId: text = "<unk>"; type = TypeUnknown; break;
                case BosTokenId: text = "<s>"; type = TypeControl; break;
                case EosTokenId: text = "</s>"; type = TypeControl; break;
                default:
                    type = text.Length == 0 ? TypeControl : IsByteToken(text) ? TypeByte : TypeNormal;
                    break;
            }

            tokens[id] = text.Replace(' ', '\u2581');
            scores[id] = tokenizer.GetScore(id);
            types[id] = type;
        }
        return new Llama2cGgufVocabulary(tokens, scores, types);
    }

    /// <summary>
    /// SentencePiece's byte-fallback pieces, "&lt;0x00&gt;" … "&lt;0xFF&gt;". Stricter than llama.cpp's
    /// sscanf("&lt;0x%02hhX&gt;"), which also accepts a prefix such as "&lt;0x4"; real vocabularies only hold the exact form.
    /// </summary>
    internal static bool IsByteToken(string text) =>
        text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>'
        && char.IsAsciiHexDigit(text[3]) && char.IsAsciiHexDigit(text[4]);
}
