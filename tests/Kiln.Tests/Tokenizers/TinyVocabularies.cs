using Kiln.Tokenizers;

namespace Kiln.Tests.Tokenizers;

/// <summary>Small hand-made vocabularies, so the algorithms can be checked against hand-worked results.</summary>
internal static class TinyVocabularies
{
    /// <summary>Byte token &lt;0xNN&gt; sits at id 3 + NN, as in Llama's vocabulary.</summary>
    public static int ByteId(int value) => 3 + value;

    public const int Space = 259;   // "▁"
    public const int A = 260;       // "a"
    public const int B = 261;       // "b"
    public const int C = 262;       // "c"
    public const int AB = 263;      // "ab"
    public const int BC = 264;      // "bc"
    public const int SpaceA = 265;  // "▁a"
    public const int ImEnd = 266;   // "<|im_end|>", stored as a normal token
    public const int Tool = 267;    // "<tool>", user-defined
    public const int ToolCall = 268; // "<tool><call>", user-defined

    /// <summary>
    /// SentencePiece: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, 256 byte tokens, then ▁ a b c ab bc ▁a and three specials.
    /// </summary>
    public static TokenizerData SentencePiece(float abScore = -5f, float bcScore = -3f, bool withBytes = true, string? modelName = null)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add(withBytes ? $"<0x{b:X2}>" : $"[unused byte {b}]");
            types.Add(withBytes ? (int)TokenType.Byte : (int)TokenType.Unused);
            scores.Add(0);
        }
        (string Text, float Score, TokenType Type)[] rest =
        [
            ("\u2581", -1f, TokenType.Normal), ("a", -2f, TokenType.Normal), ("b", -2f, TokenType.Normal),
            ("c", -2f, TokenType.Normal), ("ab", abScore, TokenType.Normal), ("bc", bcScore, TokenType.Normal),
            ("\u2581a", -4f, TokenType.Normal), ("<|im_end|>", 0f, TokenType.Normal), ("<tool>", 0f, TokenType.UserDefined),
            ("<tool><call>", 0f, TokenType.UserDefined),
        ];
        foreach (var (text, score, type) in rest)
        {
            tokens.Add(text);
            scores.Add(score);
            types.Add((int)type);
        }
        return new TokenizerData
        {
            Model = "llama",
            Tokens = tokens,
            Scores = scores,
            TokenTypes = types,
            BosId = 1,
            EosId = 2,
            UnknownId = 0,
            ModelName = modelName,
        };
    }

    public const int BpeA = 0, BpeB = 1, BpeC = 2, BpeSpace = 3, BpeAB = 4, BpeBC = 5, BpeSpaceA = 6, BpeABC = 7, BpeEnd = 8, BpeDot = 9, BpeSpaceDot = 10;

    /// <summary>Byte-level BPE over "a b c Ġ ab bc Ġa abc &lt;|endoftext|&gt; . Ġ." with the given merges (Ġ is the space byte).</summary>
    public static TokenizerData BytePair(string[] merges, string? pre = "gpt-2") => new()
    {
        Model = "gpt2",
        Pre = pre,
        Tokens = ["a", "b", "c", "\u0120", "ab", "bc", "\u0120a", "abc", "<|endoftext|>", ".", "\u0120."],
        TokenTypes = [1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1],
        Merges = merges,
        BosId = BpeEnd,
        EosId = BpeEnd,
    };
}
