using System.Buffers;
using System.Text;
using Kiln.Formats.Gguf;
using Kiln.Tokenizers.PreTokenization;

namespace Kiln.Tokenizers;

/// <summary>
/// A tokenizer read from GGUF metadata, behaving as llama.cpp's llama_vocab does: SentencePiece BPE for
/// <c>tokenizer.ggml.model = "llama"</c>, byte-level BPE with a per-model pre-tokenizer for <c>"gpt2"</c>.
/// Instances are immutable and safe to share between threads.
/// </summary>
public abstract class Tokenizer
{
    private const char SentencePieceSpace = '\u2581';

    private readonly string[] _texts;
    private readonly TokenType[] _types;
    private readonly Dictionary<string, int> _idsByText;
    private readonly bool[] _endOfGeneration;
    private readonly int[] _endOfGenerationIds;
    private readonly SpecialTokenSplitter _specialTokens;
    private readonly byte[] _pieceBytes;
    private readonly int[] _pieceOffsets;

    private protected Tokenizer(TokenizerData data, VocabularyDefaults defaults)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Tokens is null || data.Tokens.Count == 0)
            throw new InvalidDataException("tokenizer.ggml.tokens is missing or empty");
        int n = data.Tokens.Count;
        Model = data.Model;

        _texts = new string[n];
        _idsByText = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            string? text = data.Tokens[i];
            if (string.IsNullOrEmpty(text))
                text = $"[EMPTY_{i}]";
            _texts[i] = text;
            _idsByText[text] = i; // a repeated piece resolves to its last id, as in llama.cpp
        }
        IdsBySpan = _idsByText.GetAlternateLookup<ReadOnlySpan<char>>();

        if (data.Scores is { } scores && scores.Count < n)
            throw new InvalidDataException($"tokenizer.ggml.scores has {scores.Count} entries for {n} tokens");
        if (data.TokenTypes is { } rawTypes && rawTypes.Count < n)
            throw new InvalidDataException($"tokenizer.ggml.token_type has {rawTypes.Count} entries for {n} tokens");
        Scores = new float[n];
        _types = new TokenType[n];
        Attributes = new TokenAttributes[n];
        for (int i = 0; i < n; i++)
        {
            Scores[i] = data.Scores?[i] ?? 0f;
            int rawType = data.TokenTypes?[i] ?? (int)TokenType.Normal;
            _types[i] = Enum.IsDefined((TokenType)rawType) ? (TokenType)rawType : TokenType.Undefined;
            Attributes[i] = TokenAttributesOf.FromType(_types[i]);
        }

        BosId = ResolveSpecialId(data.BosId, defaults.BosId, n);
        EosId = ResolveSpecialId(data.EosId, defaults.EosId, n);
        EotId = ResolveSpecialId(data.EotId, -1, n);
        int eomId = ResolveSpecialId(data.EomId, -1, n);
        UnknownId = ResolveSpecialId(data.UnknownId, defaults.UnknownId, n);
        PadId = ResolveSpecialId(data.PadId, -1, n);
        int fimPre = ResolveSpecialId(data.FimPrefixId, -1, n);
        int fimSuf = ResolveSpecialId(data.FimSuffixId, -1, n);
        int fimMid = ResolveSpecialId(data.FimMiddleId, -1, n);
        int fimPad = ResolveSpecialId(data.FimPadId, -1, n);
        int fimRep = ResolveSpecialId(data.FimRepoId, -1, n);
        int fimSep = ResolveSpecialId(data.FimSeparatorId, -1, n);

        AddSpacePrefix = data.AddSpacePrefix ?? defaults.AddSpacePrefix;
        AddBos = data.AddBos ?? defaults.AddBos;
        AddEos = data.AddEos ?? defaults.AddEos;
        CleansSpaces = defaults.CleanSpaces;
        if (AddBos && BosId < 0)
            throw new InvalidDataException("tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
        if (AddEos && EosId < 0)
            throw new InvalidDataException("tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set");

        // llama.cpp finds these by text when the file does not name them, and forces them to be control tokens.
        int eotId = EotId;
        DetectByText(ref eotId, EndOfTurnTexts);
        EotId = eotId;
        DetectByText(ref eomId, ["<|eom_id|>"]);
        DetectByText(ref fimPre, ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uFF5Cfim\u2581begin\uFF5C>", "<PRE>", "\u2581<PRE>"]);
        DetectByText(ref fimSuf, ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uFF5Cfim\u2581hole\uFF5C>", "<SUF>", "\u2581<SUF>"]);
        DetectByText(ref fimMid, ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uFF5Cfim\u2581end\uFF5C>", "<MID>", "\u2581<MID>"]);
        DetectByText(ref fimPad, ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"]);
        DetectByText(ref fimRep, ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]);
        DetectByText(ref fimSep, ["<|file_sep|>"]);

        // Control tokens named "unused…" are placeholders.
        for (int i = 0; i < n; i++)
            if ((Attributes[i] & TokenAttributes.Control) != 0 && _texts[i].Contains("unused", StringComparison.Ordinal))
                Attributes[i] |= TokenAttributes.Unused;

        _endOfGeneration = new bool[n];
        foreach (int id in (ReadOnlySpan<int>)[fimPad, fimRep, fimSep])
            if (id >= 0)
                _endOfGeneration[id] = true;
        for (int i = 0; i < n; i++)
        {
            if (Array.IndexOf(EndOfGenerationTexts, _texts[i]) >= 0)
            {
                _endOfGeneration[i] = true;
                Attributes[i] |= TokenAttributes.Control;
            }
        }
        foreach (int id in (ReadOnlySpan<int>)[EosId, EotId, eomId])
            if (id >= 0)
                _endOfGeneration[id] = true;
        _endOfGenerationIds = Enumerable.Range(0, n).Where(i => _endOfGeneration[i]).ToArray();

        int[] special = Enumerable.Range(0, n)
            .Where(i => (Attributes[i] & (TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown)) != 0)
            .OrderByDescending(i => Encoding.UTF8.GetByteCount(_texts[i]))
            .ThenBy(i => i)
            .ToArray();

        (_pieceBytes, _pieceOffsets) = BuildPieces(defaults.Kind);

        ApplyModelSpecificAttributes(data, special);
        _specialTokens = new SpecialTokenSplitter(_texts, Attributes, special);
    }

    // Texts llama.cpp takes as the end-of-turn token when tokenizer.ggml.eot_token_id is absent.
    private static readonly string[] EndOfTurnTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
        "<\uFF5Cend\u2581of\u2581sentence\uFF5C>",
    ];

    // Texts llama.cpp treats as end of generation wherever they occur in the vocabulary.
    private static readonly string[] EndOfGenerationTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
    ];

    /// <summary>How a tokenizer model fills in what the file leaves out (llama.cpp's per-type defaults).</summary>
    private protected readonly record struct VocabularyDefaults(
        VocabularyKind Kind, int BosId, int EosId, int UnknownId,
        bool AddSpacePrefix, bool AddBos, bool AddEos, bool CleanSpaces);

    private protected enum VocabularyKind
    {
        SentencePiece,
        BytePair,
    }

    /// <summary><c>tokenizer.ggml.model</c>.</summary>
    public string Model { get; }

    public int VocabSize => _texts.Length;

    /// <summary>Beginning-of-sequence id, or -1. As in llama.cpp, a file without the key gets the model type's default
    /// (SentencePiece 1, byte-level BPE 11) when that id exists.</summary>
    public int BosId { get; }

    /// <summary>End-of-sequence id, or -1 (defaults as for <see cref="BosId"/>: SentencePiece 2, byte-level BPE 11).</summary>
    public int EosId { get; }

    /// <summary>End-of-turn id from the file, else found by text ("&lt;|eot_id|&gt;", "&lt;|im_end|&gt;", …), else -1.</summary>
    public int EotId { get; }

    /// <summary>Unknown-token id, or -1 (SentencePiece default 0).</summary>
    public int UnknownId { get; }

    public int PadId { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial prepends <see cref="BosId"/>.</summary>
    public bool AddBos { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial appends <see cref="EosId"/>.</summary>
    public bool AddEos { get; }

    /// <summary>SentencePiece's dummy prefix: a space is put before text that starts the input or follows a special token.</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>Ids that end generation: EOS, EOT, EOM and the end tokens llama.cpp recognises by text.</summary>
    public ReadOnlySpan<int> EndOfGenerationIds => _endOfGenerationIds;

    private protected float[] Scores { get; }

    private protected TokenAttributes[] Attributes { get; }

    private protected Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> IdsBySpan { get; }

    /// <summary>Whether llama.cpp's detokenizer tidies spaces before punctuation for this vocabulary (clean_spaces).</summary>
    private protected bool CleansSpaces { get; }

    /// <summary>
    /// Reads the tokenizer stored in a GGUF file's <c>tokenizer.ggml.*</c> keys. Throws
    /// <see cref="NotSupportedException"/> for tokenizer models other than "llama" and "gpt2" and
    /// <see cref="InvalidDataException"/> when the keys are missing or inconsistent.
    /// </summary>
    public static Tokenizer FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return Create(GgufTokenizerReader.Read(file));
    }

    /// <summary>Builds a tokenizer from already extracted data (see <see cref="TokenizerData"/>).</summary>
    public static Tokenizer Create(TokenizerData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return data.Model switch
        {
            "llama" => new SentencePieceTokenizer(data),
            "gpt2" => new BytePairTokenizer(data),
            null or "" => throw new NotSupportedException("the file has no tokenizer (tokenizer.ggml.model is missing)"),
            "bert" => throw new NotSupportedException("tokenizer model 'bert' (WordPiece) is not supported; Kiln supports 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)"),
            "t5" => throw new NotSupportedException("tokenizer model 't5' (Unigram) is not supported; Kiln supports 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)"),
            "rwkv" => throw new NotSupportedException("tokenizer model 'rwkv' is not supported; Kiln supports 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)"),
            _ => throw new NotSupportedException($"tokenizer model '{data.Model}' is not supported; Kiln supports 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)"),
        };
    }

    /// <summary>
    /// Tokenizes <paramref name="text"/> as llama.cpp's llama_tokenize does.
    /// </summary>
    /// <param name="addSpecial">Add BOS / EOS as <see cref="AddBos"/> / <see cref="AddEos"/> say.</param>
    /// <param name="parseSpecial">Text of control tokens (e.g. "&lt;|im_start|&gt;", "&lt;/s&gt;") becomes those tokens;
    /// otherwise it is tokenized as plain text. User-defined tokens are always recognised.</param>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var output = new List<int>(text.Length / 3 + 4);
        if (addSpecial && AddBos)
            output.Add(BosId);
        EncodeFragments(text, _specialTokens.Split(text, parseSpecial), output);
        if (addSpecial && AddEos)
            output.Add(EosId);
        return output.ToArray();
    }

    /// <summary>Tokenizes the plain-text fragments and passes the special-token ones through.</summary>
    private protected abstract void EncodeFragments(string text, List<TextFragment> fragments, List<int> output);

    /// <summary>The raw piece stored for <paramref name="id"/> (an empty stored piece reads "[EMPTY_id]", as in llama.cpp).</summary>
    public string GetTokenText(int id) => _texts[CheckId(id)];

    public TokenType GetTokenType(int id) => _types[CheckId(id)];

    /// <summary>The id whose stored piece is exactly <paramref name="text"/>, or null.</summary>
    public int? FindToken(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _idsByText.TryGetValue(text, out int id) ? id : null;
    }

    /// <summary>Whether generation should stop at <paramref name="id"/> (llama.cpp's llama_vocab_is_eog).</summary>
    public bool IsEndOfGeneration(int id) => (uint)id < (uint)_endOfGeneration.Length && _endOfGeneration[id];

    /// <summary>Length in bytes of the longest piece any token renders to (special tokens included).</summary>
    public int MaxPieceBytes { get; private set; }

    /// <summary>
    /// Writes the UTF-8 bytes token <paramref name="id"/> contributes to text (llama.cpp's token_to_piece):
    /// SentencePiece "▁" becomes a space and &lt;0xNN&gt; the byte NN; byte-level BPE characters map back to their
    /// bytes; control and unknown tokens give nothing unless <paramref name="renderSpecial"/>. A single token's bytes
    /// may be part of a UTF-8 character. Returns the number of bytes written; throws when
    /// <paramref name="destination"/> is too small (256 bytes suffice for every ordinary vocabulary, see
    /// <see cref="MaxPieceBytes"/>).
    /// </summary>
    public int DecodeTokenBytes(int id, Span<byte> destination, bool renderSpecial = false)
    {
        ReadOnlySpan<byte> piece = PieceBytes(id, renderSpecial);
        if (piece.Length > destination.Length)
            throw new ArgumentException($"token {id} decodes to {piece.Length} bytes, more than the {destination.Length}-byte destination holds", nameof(destination));
        piece.CopyTo(destination);
        return piece.Length;
    }

    /// <summary>
    /// Turns ids back into text as llama.cpp's llama_detokenize does: the space SentencePiece put before the text is
    /// dropped from the first token, and with <paramref name="skipSpecial"/> a leading BOS / trailing EOS added by
    /// <see cref="Encode"/> are dropped and control tokens render as nothing. Bytes that do not form valid UTF-8
    /// become U+FFFD. <paramref name="cleanUpSpaces"/> applies llama.cpp's clean-up of spaces before punctuation
    /// and contractions for vocabularies that ask for it (off by default, so that decoding inverts encoding).
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true, bool cleanUpSpaces = false)
    {
        int start = 0;
        int end = ids.Length;
        bool removeSpace = AddSpacePrefix;
        if (skipSpecial && AddBos && end > 0 && ids[0] == BosId)
        {
            removeSpace = false; // llama.cpp: the space after a removed BOS stays
            start = 1;
        }
        if (skipSpecial && AddEos && end > start && ids[end - 1] == EosId)
            end--;

        var bytes = new ArrayBufferWriter<byte>(Math.Max(16, (end - start) * 4));
        for (int i = start; i < end; i++)
        {
            ReadOnlySpan<byte> piece = PieceBytes(ids[i], renderSpecial: !skipSpecial);
            if (removeSpace && piece.Length > 0 && piece[0] == (byte)' ')
                piece = piece[1..];
            removeSpace = false;
            bytes.Write(piece);
        }

        if (cleanUpSpaces && CleansSpaces)
        {
            byte[] text = bytes.WrittenSpan.ToArray();
            int length = CleanUpSpaces(text);
            return Encoding.UTF8.GetString(text, 0, length);
        }
        return Encoding.UTF8.GetString(bytes.WrittenSpan);
    }

    /// <summary>The bytes of token <paramref name="id"/> without copying (valid as long as the tokenizer lives).</summary>
    internal ReadOnlySpan<byte> PieceBytes(int id, bool renderSpecial)
    {
        CheckId(id);
        if (!renderSpecial && (Attributes[id] & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0)
            return [];
        return _pieceBytes.AsSpan(_pieceOffsets[id], _pieceOffsets[id + 1] - _pieceOffsets[id]);
    }

    private protected int CheckId(int id)
    {
        if ((uint)id >= (uint)_texts.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id must be in [0, {_texts.Length})");
        return id;
    }

    private static int ResolveSpecialId(long? stored, int fallback, int vocabSize)
    {
        if (fallback >= vocabSize)
            fallback = -1;
        if (stored is not { } value)
            return fallback;
        return value >= 0 && value < vocabSize ? (int)value : fallback;
    }

    // llama.cpp takes whichever candidate its hash map yields first; the candidates' own order (most specific
    // first) is the deterministic reading of that, and picks e.g. Phi-3's "<|end|>" over "<|endoftext|>".
    private void DetectByText(ref int id, ReadOnlySpan<string> candidates)
    {
        if (id >= 0)
            return;
        foreach (string candidate in candidates)
        {
            if (_idsByText.TryGetValue(candidate, out int found))
            {
                id = found;
                Attributes[found] |= TokenAttributes.Control;
                return;
            }
        }
    }

    private (byte[] Bytes, int[] Offsets) BuildPieces(VocabularyKind kind)
    {
        var offsets = new int[_texts.Length + 1];
        var bytes = new ArrayBufferWriter<byte>(_texts.Length * 8);
        var scratch = new List<byte>(64);
        int max = 0;
        for (int i = 0; i < _texts.Length; i++)
        {
            offsets[i] = bytes.WrittenCount;
            scratch.Clear();
            AppendPiece(kind, i, scratch);
            bytes.Write(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(scratch));
            max = Math.Max(max, scratch.Count);
        }
        offsets[^1] = bytes.WrittenCount;
        MaxPieceBytes = max;
        return (bytes.WrittenSpan.ToArray(), offsets);
    }

    // llama.cpp's token_to_piece with special = true; non-rendering of control tokens is decided per call.
    private void AppendPiece(VocabularyKind kind, int id, List<byte> output)
    {
        TokenAttributes attributes = Attributes[id];
        string text = _texts[id];
        if ((attributes & (TokenAttributes.Unknown | TokenAttributes.Control | TokenAttributes.UserDefined)) != 0)
        {
            output.AddRange(Encoding.UTF8.GetBytes(text));
        }
        else if ((attributes & TokenAttributes.Normal) != 0)
        {
            if (kind == VocabularyKind.SentencePiece)
                output.AddRange(Encoding.UTF8.GetBytes(text.Replace(SentencePieceSpace, ' ')));
            else
                AppendByteLevelDecoded(text, output);
        }
        else if ((attributes & TokenAttributes.Byte) != 0)
        {
            output.Add(ParseByteToken(text));
        }
    }

    // llama_decode_text: each character back to the byte it stands for; llama.cpp marks strays verbosely.
    private static void AppendByteLevelDecoded(string text, List<byte> output)
    {
        Span<byte> utf8 = stackalloc byte[4];
        foreach (Rune rune in text.EnumerateRunes())
        {
            int b = ByteLevelAlphabet.CharToByte(rune.Value);
            if (b >= 0)
            {
                output.Add((byte)b);
                continue;
            }
            int count = rune.EncodeToUtf8(utf8);
            var marker = new StringBuilder("[UNK_BYTE_0x");
            for (int k = 0; k < count; k++)
                marker.Append(utf8[k].ToString("x2"));
            marker.Append(text).Append(']');
            output.AddRange(Encoding.UTF8.GetBytes(marker.ToString()));
        }
    }

    // "<0xNN>" -> NN, read like strtol over the two characters after "<0x".
    private static byte ParseByteToken(string text)
    {
        int value = 0;
        for (int k = 3; k < Math.Min(5, text.Length); k++)
        {
            int digit = HexDigit(text[k]);
            if (digit < 0)
                break;
            value = value * 16 + digit;
        }
        return (byte)value;
    }

    private protected static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    private void ApplyModelSpecificAttributes(TokenizerData data, int[] special)
    {
        string pre = data.Pre ?? "";
        string name = (data.ModelName ?? "").ToLowerInvariant();
        if (pre.Contains("jina-v2-de") || pre.Contains("jina-v2-es") || pre.Contains("jina-v2-code"))
        {
            if (_idsByText.TryGetValue("<mask>", out int mask))
                Attributes[mask] |= TokenAttributes.LStrip;
        }
        else if (name.Contains("phi-3") || name.Contains("phi3"))
        {
            // Phi-3's special tokens swallow the whitespace after them.
            foreach (int id in special)
                Attributes[id] |= TokenAttributes.RStrip;
            if (_idsByText.TryGetValue("</s>", out int eos))
                Attributes[eos] |= TokenAttributes.RStrip;
            foreach (string text in (ReadOnlySpan<string>)["<unk>", "<s>", "<|endoftext|>"])
                if (_idsByText.TryGetValue(text, out int id))
                    Attributes[id] &= ~TokenAttributes.RStrip;
        }
    }

    // llama.cpp receives UTF-8, where a lone surrogate can only arrive as U+FFFD.
    private static string ReplaceLoneSurrogates(string text)
    {
        int bad = -1;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            if (char.IsSurrogate(c))
            {
                bad = i;
                break;
            }
        }
        if (bad < 0)
            return text;
        var chars = text.ToCharArray();
        for (int i = bad; i < chars.Length; i++)
        {
            if (char.IsHighSurrogate(chars[i]) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1]))
            {
                i++;
                continue;
            }
            if (char.IsSurrogate(chars[i]))
                chars[i] = '\uFFFD';
        }
        return new string(chars);
    }

    // llama_detokenize's clean_spaces passes, in place over UTF-8 bytes; returns the new length.
    private static int CleanUpSpaces(byte[] text)
    {
        int total = text.Length;

        // " ?", " !", " .", " ,"
        int total1 = total;
        total = total > 0 ? 1 : 0;
        for (int i = 1; i < total1; i++)
        {
            byte x = text[i];
            if (text[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',')
                total--;
            text[total++] = x;
        }

        // " ' " -> "'"
        int total2 = total;
        total = total > 0 ? 1 : 0;
        for (int i = 1; i < total2; i++)
        {
            byte x = text[i];
            if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ')
            {
                total--;
                text[++i] = 0;
            }
            text[total++] = x;
        }

        // " 's", " 'm", " 're", " 've"
        int total3 = total;
        total = total > 0 ? 1 : 0;
        for (int i = 1; i < total3; i++)
        {
            byte x = text[i];
            if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3)
            {
                byte x1 = text[i + 1];
                if (x1 is (byte)'s' or (byte)'m')
                    total--;
                else if (i + 2 < total3)
                {
                    byte x2 = text[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))
                        total--;
                }
            }
            text[total++] = x;
        }
        return total;
    }
}
