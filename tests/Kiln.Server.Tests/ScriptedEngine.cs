using System.Runtime.CompilerServices;
using Kiln.Serving;
using Kiln.Tokenizers;

namespace Kiln.Server.Tests;

/// <summary>
/// A test double of the serving engine: words from a small vocabulary chosen by a seeded PRNG (or a fixed script),
/// honouring MaxTokens, constraints, top logprobs, cancellation and a bounded number of running sequences, and
/// reporting two "KV blocks" per running sequence so tests can see that aborted sequences give theirs back.
/// </summary>
internal sealed class ScriptedEngine : IInferenceEngine
{
    public static readonly string[] Words = ["\u2581Hello", "\u2581world", ",", "\u2581the", "\u2581cat", "\u2581sat", "\u2581on", "\u2581mat", "\u2581STOP", "."];

    private int _running;
    private long _generated;
    private long _prompt;

    public ScriptedEngine() => Tokenizer = CreateTokenizer();

    public Tokenizer Tokenizer { get; }

    public string ModelName => "scripted";

    public int ContextLength { get; init; } = 256;

    public int EmbeddingLength => 8;

    /// <summary>Most sequences admitted at once; beyond, requests are refused with QueueFull.</summary>
    public int MaxRunning { get; init; } = 64;

    public TimeSpan TokenDelay { get; init; } = TimeSpan.FromMilliseconds(1);

    /// <summary>When set, the exact tokens to generate (then end of generation).</summary>
    public Func<EngineRequest, IReadOnlyList<int>>? Script { get; set; }

    public int Running => Volatile.Read(ref _running);

    public int Id(string piece) => Tokenizer.FindToken(piece) ?? throw new ArgumentException(piece);

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(EngineRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (request.Prompt.Count >= ContextLength)
            throw new EngineRejectedException(EngineRejection.PromptTooLong, $"prompt of {request.Prompt.Count} tokens does not fit the context of {ContextLength}");
        if (Interlocked.Increment(ref _running) > MaxRunning)
        {
            Interlocked.Decrement(ref _running);
            throw new EngineRejectedException(EngineRejection.QueueFull, "the waiting queue is full");
        }
        try
        {
            Interlocked.Add(ref _prompt, request.Prompt.Count);
            ulong seed = request.Sampling.IsGreedy ? 0 : request.Sampling.Seed;
            foreach (int t in request.Prompt)
                seed = seed * 31 + (ulong)t;
            var random = new Random((int)(seed ^ (seed >> 32)));
            IReadOnlyList<int>? script = Script?.Invoke(request);
            var logits = new float[Tokenizer.VocabSize];
            for (int i = 0; ; i++)
            {
                await Task.Delay(TokenDelay, cancellationToken).ConfigureAwait(false);
                int token;
                if (request.Constraint is { } constraint)
                {
                    token = Constrained(constraint, random, logits);
                }
                else if (script is not null)
                {
                    if (i >= script.Count)
                    {
                        yield return new GeneratedToken(-1, 0, [], EngineFinishReason.EndOfGeneration);
                        yield break;
                    }
                    token = script[i];
                }
                else
                {
                    token = Id(Words[random.Next(Words.Length)]);
                }
                if (Tokenizer.IsEndOfGeneration(token) && !request.IgnoreEndOfGeneration)
                {
                    yield return new GeneratedToken(-1, 0, [], EngineFinishReason.EndOfGeneration);
                    yield break;
                }
                request.Constraint?.Accept(token);
                Interlocked.Increment(ref _generated);
                var top = Enumerable.Range(0, request.TopLogprobs).Select(k => new TokenLogprob((token + k) % Tokenizer.VocabSize, -0.25f - k)).ToArray();
                bool last = i + 1 >= request.MaxTokens;
                yield return new GeneratedToken(token, -0.25f, top, last ? EngineFinishReason.Length : null);
                if (last)
                    yield break;
            }
        }
        finally
        {
            Interlocked.Decrement(ref _running);
        }
    }

    private int Constrained(ITokenConstraint constraint, Random random, float[] logits)
    {
        Array.Clear(logits);
        constraint.Mask(logits);
        var allowed = Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])).ToList();
        int end = allowed.FindIndex(Tokenizer.IsEndOfGeneration);
        if (end >= 0)
            return allowed[end];
        var closing = allowed.Where(t => Tokenizer.GetTokenText(t).IndexOfAny(['"', '}', ']']) >= 0).ToList();
        List<int> pool = closing.Count > 0 && random.NextDouble() < 0.5 ? closing : allowed;
        return pool[random.Next(pool.Count)];
    }

    public Task<float[]> EmbedAsync(IReadOnlyList<int> tokens, CancellationToken cancellationToken = default)
    {
        var v = new float[EmbeddingLength];
        foreach (int t in tokens)
            v[t % EmbeddingLength] += 1 + t % 3;
        float norm = MathF.Sqrt(v.Sum(x => x * x));
        return Task.FromResult(v.Select(x => x / norm).ToArray());
    }

    public EngineMetrics GetMetrics() => new()
    {
        RunningSequences = Running,
        KvBlocksUsed = 2 * Running,
        KvBlocksTotal = 2 * MaxRunning,
        PromptTokens = Interlocked.Read(ref _prompt),
        GeneratedTokens = Interlocked.Read(ref _generated),
    };

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private static Tokenizer CreateTokenizer()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add((int)TokenType.Byte);
        }
        string[] pieces = [.. Words, "\u2581", "{", "}", "\"", ":", "\":", "{\"", "\",", "name", "age", "1", "2", "true", "\u2581user", "\u2581hi", "User", "Assistant", "\n"];
        foreach (string piece in pieces)
        {
            tokens.Add(piece);
            types.Add((int)TokenType.Normal);
        }
        return Tokenizer.Create(new TokenizerData
        {
            Model = "llama",
            Tokens = tokens,
            TokenTypes = types,
            Scores = tokens.Select(t => (float)t.Length).ToList(),
            BosId = 1,
            EosId = 2,
            UnknownId = 0,
        });
    }
}
