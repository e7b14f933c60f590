using System.Text;
using System.Text.Json;
using Kiln.Formats.Gguf;
using Kiln.Serving.Constraints;
using Kiln.Tokenizers;

namespace Kiln.Tests.Serving.Constraints;

public class JsonTokenConstraintTests
{
    public static readonly TheoryData<string> Schemas = new()
    {
        """{"type":"object"}""",
        """
        {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
         "score":{"type":"number"},"tags":{"type":"array","items":{"type":"string"},"maxItems":3},
         "kind":{"enum":["cat","dog",7,null]},"ok":{"type":"boolean"},"none":{"type":"null"},
         "nested":{"type":"object","properties":{"x":{"type":["integer","string"]}},"required":["x"],"additionalProperties":false}},
         "required":["name","kind","nested"],"additionalProperties":false}
        """,
        """{"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"id":{"const":"a\"b"}},"required":["id"]},"minItems":1,"maxItems":2}},"required":["items"]}""",
        """{"type":"object","additionalProperties":{"type":"integer"}}""",
        """{"type":"object","properties":{"code":{"type":"string","minLength":2,"maxLength":4},"note":{"type":"string","maxLength":1}},"required":["code","note"]}""",
    };

    /// <summary>
    /// A synthetic SentencePiece vocabulary: byte tokens (so any byte, valid UTF-8 or not, can be proposed), JSON
    /// punctuation fused in awkward ways, multi-byte characters, whitespace runs, and an end token.
    /// </summary>
    private static Tokenizer SyntheticVocabulary()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add((int)TokenType.Byte);
        }
        string[] pieces =
        [
            "{", "}", "[", "]", "\"", ":", ",", "{\"", "\":", "\": ", "\",", "\"}", "}}", "},", "],", "\u2581", "\u2581\u2581", "\n", "\n\u2581\u2581",
            "name", "age", "score", "tags", "kind", "ok", "none", "nested", "items", "id", "x", "cat", "dog", "a\\\"b", "\\\"", "\\n", "\\u00e9",
            "true", "tr", "ue", "false", "null", "nu", "0", "1", "12", "-", ".", "e", "E+", "5.", "é", "日本", "😀", "hello", "\u2581world", "\"name\":\"",
            "7", "7,", "null}", "[\"", "\"]", "\\", "u", "d800",
        ];
        foreach (string piece in pieces)
        {
            tokens.Add(piece);
            types.Add((int)TokenType.Normal);
        }
        return Tokenizer.Create(new TokenizerData { Model = "llama", Tokens = tokens, TokenTypes = types, BosId = 1, EosId = 2, UnknownId = 0 });
    }

    private static Tokenizer SharedVocabulary(string name)
    {
        using var file = GgufFile.Open(SharedData.Path("tokenizer", $"ggml-vocab-{name}.gguf"));
        return Tokenizer.FromGguf(file);
    }

    /// <summary>
    /// Chooses only tokens the mask allows, leaning towards tokens that close something so that walks end, and
    /// returns the text (null if the walk did not finish within the step budget).
    /// </summary>
    private static string? RandomWalk(Tokenizer tokenizer, JsonSchemaNode schema, Random random, int maxSteps)
    {
        var constraint = new JsonTokenConstraint(tokenizer, schema);
        var logits = new float[tokenizer.VocabSize];
        var bytes = new List<byte>();
        var allowed = new List<int>();
        for (int step = 0; step < maxSteps; step++)
        {
            Array.Clear(logits);
            constraint.Mask(logits);
            allowed.Clear();
            for (int i = 0; i < logits.Length; i++)
            {
                if (!float.IsNegativeInfinity(logits[i]))
                    allowed.Add(i);
            }
            Assert.NotEmpty(allowed);
            int end = allowed.FindIndex(tokenizer.IsEndOfGeneration);
            if (end >= 0 && (random.NextDouble() < 0.5 || allowed.Count == 1))
            {
                Assert.True(constraint.CanEnd);
                return Encoding.UTF8.GetString([.. bytes]);
            }
            List<int> pool = allowed;
            if (random.NextDouble() < 0.4)
            {
                var closing = allowed.Where(t => !tokenizer.IsEndOfGeneration(t) && tokenizer.GetTokenText(t).IndexOfAny(['"', '}', ']', ',']) >= 0).ToList();
                if (closing.Count > 0)
                    pool = closing;
            }
            int token = pool[random.Next(pool.Count)];
            Assert.True(constraint.IsAllowed(token));
            constraint.Accept(token);
            var piece = new byte[256];
            bytes.AddRange(piece.AsSpan(0, tokenizer.DecodeTokenBytes(token, piece)).ToArray());
            if (constraint.IsComplete)
                return Encoding.UTF8.GetString([.. bytes]);
        }
        return null;
    }

    private static void AssertWalksProduceValidDocuments(Tokenizer tokenizer, string schemaJson, int walks, int maxSteps)
    {
        using var schemaDocument = JsonDocument.Parse(schemaJson);
        JsonSchemaNode schema = JsonSchemaCompiler.Compile(schemaDocument.RootElement);
        var random = new Random(schemaJson.Length);
        int finished = 0;
        for (int walk = 0; walk < walks; walk++)
        {
            string? text = RandomWalk(tokenizer, schema, random, maxSteps);
            if (text is null)
                continue;
            finished++;
            using var document = JsonDocument.Parse(text);
            Assert.True(JsonSchemaValidator.IsValid(document.RootElement, schemaDocument.RootElement), $"invalid for the schema: {text}");
        }
        Assert.True(finished >= walks / 2, $"only {finished} of {walks} walks finished");
    }

    [Theory]
    [MemberData(nameof(Schemas))]
    public void RandomWalksOverASyntheticVocabularyGiveValidDocuments(string schema) =>
        AssertWalksProduceValidDocuments(SyntheticVocabulary(), schema, walks: 40, maxSteps: 400);

    [SharedTheory]
    [MemberData(nameof(Schemas))]
    public void RandomWalksOverTheLlamaVocabularyGiveValidDocuments(string schema) =>
        AssertWalksProduceValidDocuments(SharedVocabulary("llama-spm"), schema, walks: 4, maxSteps: 300);

    [SharedFact]
    public void RandomWalksOverAByteLevelVocabularyGiveValidDocuments() =>
        AssertWalksProduceValidDocuments(SharedVocabulary("gpt-2"), JsonSchemaTestSchemas.Person, walks: 4, maxSteps: 300);

    [Fact]
    public void TheTrieMaskAgreesWithSteppingEveryTokenDirectly()
    {
        Tokenizer tokenizer = SyntheticVocabulary();
        JsonSchemaNode schema = JsonSchemaCompiler.Compile(JsonSchemaTestSchemas.Person);
        var random = new Random(7);
        for (int walk = 0; walk < 5; walk++)
        {
            var constraint = new JsonTokenConstraint(tokenizer, schema);
            var logits = new float[tokenizer.VocabSize];
            for (int step = 0; step < 30 && !constraint.IsComplete; step++)
            {
                Array.Clear(logits);
                constraint.Mask(logits);
                var viaTrie = Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])).ToList();
                var direct = Enumerable.Range(0, logits.Length).Where(constraint.IsAllowed).ToList();
                Assert.Equal(direct, viaTrie);
                int token = viaTrie[random.Next(viaTrie.Count)];
                if (tokenizer.IsEndOfGeneration(token))
                    break;
                constraint.Accept(token);
            }
        }
    }

    [Fact]
    public void EndIsAllowedOnlyAfterAWholeDocumentAndControlTokensNever()
    {
        Tokenizer tokenizer = SyntheticVocabulary();
        var constraint = new JsonTokenConstraint(tokenizer, JsonSchemaNode.AnyObject);
        Assert.False(constraint.IsAllowed(tokenizer.EosId));
        Assert.False(constraint.IsAllowed(tokenizer.BosId));
        constraint.Accept(tokenizer.FindToken("{")!.Value);
        Assert.False(constraint.IsComplete);
        Assert.False(constraint.IsAllowed(tokenizer.EosId));
        constraint.Accept(tokenizer.FindToken("}")!.Value);
        Assert.True(constraint.IsComplete);
        Assert.True(constraint.IsAllowed(tokenizer.EosId));
        Assert.False(constraint.IsAllowed(tokenizer.FindToken("\u2581")!.Value));
        Assert.Throws<InvalidOperationException>(() => constraint.Accept(tokenizer.FindToken("}")!.Value));
    }
}

internal static class JsonSchemaTestSchemas
{
    public const string Person = """
        {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"pets":{"type":"array","items":{"enum":["cat","dog"]}},
         "married":{"type":"boolean"}},"required":["name","age"]}
        """;
}
