using Kiln.Models;
using Kiln.Models.Llama;
using Kiln.Tensors;

namespace Kiln.Tests.Models;

/// <summary>Kiln's forward pass against the naive double-precision reference on random models of every variant.</summary>
public sealed class LlamaForwardTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-forward-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly int[] Prompt = [1, 259, 260, 261, 262, 72, 101, 108, 108, 111, 263, 264, 265, 266];

    public static IEnumerable<object[]> Variants()
    {
        // name, architecture, kv heads, biases, tied, rope factor, weight type, kv cache, tolerance
        yield return ["llama-mha", "llama", 4, false, false, 0f, GgmlType.F32, KvCacheType.F32, 1e-4];
        yield return ["llama-gqa", "llama", 2, false, false, 0f, GgmlType.F32, KvCacheType.F32, 1e-4];
        yield return ["llama-mqa-tied", "llama", 1, false, true, 0f, GgmlType.F32, KvCacheType.F32, 1e-4];
        yield return ["llama-rope-linear", "llama", 2, false, false, 4f, GgmlType.F32, KvCacheType.F32, 1e-4];
        yield return ["qwen2-neox-bias", "qwen2", 2, true, false, 0f, GgmlType.F32, KvCacheType.F32, 1e-4];
        yield return ["llama-f16-cache", "llama", 2, false, false, 0f, GgmlType.F32, KvCacheType.F16, 5e-3];
        yield return ["llama-f16", "llama", 2, false, false, 0f, GgmlType.F16, KvCacheType.F32, 5e-3];
        yield return ["llama-q8_0", "llama", 2, false, false, 0f, GgmlType.Q8_0, KvCacheType.F32, 1e-3];
        yield return ["llama-q4_0", "llama", 2, false, false, 0f, GgmlType.Q4_0, KvCacheType.F32, 1e-3];
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void LogitsMatchTheNaiveReference(string name, string arch, int kvHeads, bool biases, bool tied, float ropeFactor,
        GgmlType type, KvCacheType cache, double tolerance)
    {
        var spec = new RandomLlama
        {
            Architecture = arch,
            KvHeads = kvHeads,
            Biases = biases,
            TiedOutput = tied,
            RopeLinearFactor = ropeFactor > 0 ? ropeFactor : null,
            WeightType = type,
            // Q4_0/Q8_0 need rows that are whole 32-blocks.
            Dim = 64,
            Ffn = 96,
        };
        string path = spec.Write(Path.Combine(_dir, name + ".gguf"));
        double[][] expected = NaiveLlama.Logits(spec, Prompt);

        using var model = LlamaModel.Load(path);
        using var context = new LlamaContext(model, new LlamaContextOptions { Threads = 2, KvCacheType = cache, MaxBatch = 5 });
        var logits = new float[Prompt.Length * spec.Vocab];
        context.Evaluate(Prompt, logits, allLogits: true);

        double scale = expected.SelectMany(r => r).Max(Math.Abs);
        for (int t = 0; t < Prompt.Length; t++)
        {
            for (int i = 0; i < spec.Vocab; i++)
            {
                double diff = Math.Abs(logits[t * spec.Vocab + i] - expected[t][i]);
                Assert.True(diff <= tolerance * scale, $"{name}: token {t}, logit {i}: kiln {logits[t * spec.Vocab + i]}, reference {expected[t][i]:G7}");
            }
        }
    }

    /// <summary>A Q8_0 cache (32-element blocks, so a head size of 32 here) stays within its rounding of the reference.</summary>
    [Fact]
    public void Q8_0CacheTracksTheNaiveReference()
    {
        var spec = new RandomLlama { Dim = 64, Heads = 2, KvHeads = 1, Ffn = 96 };
        string path = spec.Write(Path.Combine(_dir, "q8cache.gguf"));
        double[][] expected = NaiveLlama.Logits(spec, Prompt);
        using var model = LlamaModel.Load(path);
        using var context = new LlamaContext(model, new LlamaContextOptions { Threads = 2, KvCacheType = KvCacheType.Q8_0, MaxBatch = 5 });
        using (var f16 = new KvCache(spec.Layers, 64, 32, KvCacheType.F16))
            Assert.True(context.KvCacheBytes < f16.ByteSize);
        var logits = new float[Prompt.Length * spec.Vocab];
        context.Evaluate(Prompt, logits, allLogits: true);
        double scale = expected.SelectMany(r => r).Max(Math.Abs), worst = 0;
        for (int t = 0; t < Prompt.Length; t++)
        {
            for (int i = 0; i < spec.Vocab; i++)
                worst = Math.Max(worst, Math.Abs(logits[t * spec.Vocab + i] - expected[t][i]) / scale);
        }
        // measured 1.3e-2: Q8_0 steps are ~8x F16's (whose cache test allows 5e-3)
        Assert.True(worst < 3e-2, $"worst |Δ logit| / scale {worst:E2}");
        Assert.True(worst > 1e-6, "a Q8_0 cache must round: identical results mean the cache type was ignored");
    }

    [Fact]
    public void Q8_0CacheRefusesHeadsThatAreNotWholeBlocks()
    {
        var spec = new RandomLlama(); // head size 16
        string path = spec.Write(Path.Combine(_dir, "q8cache-bad.gguf"));
        using var model = LlamaModel.Load(path);
        var e = Assert.Throws<ArgumentException>(() => new LlamaContext(model, new LlamaContextOptions { Threads = 1, KvCacheType = KvCacheType.Q8_0 }));
        Assert.Contains("head size", e.Message);
    }

    [Fact]
    public void IncrementalEvaluationEqualsOneBatch()
    {
        var spec = new RandomLlama();
        string path = spec.Write(Path.Combine(_dir, "inc.gguf"));
        using var model = LlamaModel.Load(path);
        using var whole = new LlamaContext(model, new LlamaContextOptions { Threads = 2 });
        using var parts = new LlamaContext(model, new LlamaContextOptions { Threads = 2 });
        var a = new float[spec.Vocab];
        var b = new float[spec.Vocab];
        whole.Evaluate(Prompt, a);
        parts.Evaluate(Prompt.AsSpan(0, 5), b);
        parts.Evaluate(Prompt.AsSpan(5, 4), b);
        parts.Evaluate(Prompt.AsSpan(9), b);
        for (int i = 0; i < a.Length; i++)
            Assert.True(Math.Abs(a[i] - b[i]) <= 1e-4f * (1 + Math.Abs(a[i])));
        Assert.Equal(Prompt.Length, parts.Position);
    }

    [Fact]
    public void TruncateRewindsTheSequence()
    {
        var spec = new RandomLlama();
        string path = spec.Write(Path.Combine(_dir, "trunc.gguf"));
        using var model = LlamaModel.Load(path);
        using var context = new LlamaContext(model, new LlamaContextOptions { Threads = 1 });
        var first = new float[spec.Vocab];
        var again = new float[spec.Vocab];
        context.Evaluate(Prompt, first);
        context.Truncate(4);
        context.Evaluate([260, 261], again);
        context.Truncate(4);
        context.Evaluate(Prompt.AsSpan(4), again);
        Assert.Equal(first, again);
    }

    [Fact]
    public void OutOfVocabularyTokensAreRejected()
    {
        var spec = new RandomLlama();
        using var model = LlamaModel.Load(spec.Write(Path.Combine(_dir, "oov.gguf")));
        using var context = new LlamaContext(model, new LlamaContextOptions { Threads = 1 });
        var logits = new float[spec.Vocab];
        Assert.Throws<ArgumentOutOfRangeException>(() => context.Evaluate([spec.Vocab], logits));
        Assert.Throws<ArgumentOutOfRangeException>(() => context.Evaluate([-1], logits));
    }

    [Fact]
    public void UnsupportedArchitectureIsAClearError()
    {
        var spec = new RandomLlama { Architecture = "falcon" };
        string path = spec.Write(Path.Combine(_dir, "falcon.gguf"));
        var e = Assert.Throws<ModelFormatException>(() => LlamaModel.Load(path));
        Assert.Contains("architecture 'falcon' is not supported", e.Message);
    }
}
