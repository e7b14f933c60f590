using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Kiln.Models.Llama;
using Kiln.Threading;

namespace Kiln.Benchmarks;

/// <summary>
/// One layer's causal attention over a prompt of <see cref="Tokens"/> tokens, TinyLlama's shape (32 query heads over
/// 4 KV heads of 64, F16 cache, 2 threads): the default llama.cpp-exact <see cref="Attention"/> against
/// <see cref="FlashAttention"/>. Run: dotnet run -c Release --project bench/Kiln.Benchmarks -- --filter '*Attention*'
/// </summary>
[Config(typeof(AttentionBenchmarks.Settings))]
public unsafe class AttentionBenchmarks
{
    private sealed class Settings : ManualConfig
    {
        public Settings() => AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("short-inproc"));
    }

    private const int Threads = 2;

    private static readonly LlamaConfig Shape = new()
    {
        Architecture = "llama", EmbeddingLength = 2048, BlockCount = 1, FeedForwardLength = 5632, HeadCount = 32, HeadCountKv = 4,
        HeadDim = 64, ContextLength = 2048, VocabSize = 32000, RmsEpsilon = 1e-5f, RopeFreqBase = 10000, RopeFreqScale = 1,
        RopeDimensions = 64, RopeOrdering = RopeOrdering.Normal,
    };

    private WorkerPool _pool = null!;
    private KvCache _cache = null!;
    private Attention _exact = null!;
    private FlashAttention _flash = null!;
    private float[] _q = null!;
    private float[] _out = null!;

    [Params(64, 512)]
    public int Tokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        _pool = new WorkerPool(Threads);
        _cache = new KvCache(1, Tokens, Shape.KvDim, KvCacheType.F16);
        var k = new float[Shape.KvDim];
        var v = new float[Shape.KvDim];
        for (int p = 0; p < Tokens; p++)
        {
            for (int i = 0; i < k.Length; i++)
            {
                k[i] = random.NextSingle() * 2 - 1;
                v[i] = random.NextSingle() * 2 - 1;
            }
            _cache.Store(0, p, k, v);
        }
        _q = new float[Tokens * Shape.QueryDim];
        for (int i = 0; i < _q.Length; i++)
            _q[i] = random.NextSingle() * 2 - 1;
        _out = new float[_q.Length];
        _exact = new Attention(Shape, Tokens, Threads);
        _flash = new FlashAttention(Shape, Threads);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cache.Dispose();
        _pool.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void Exact()
    {
        fixed (float* q = _q, o = _out)
            _exact.Run(_pool, _cache, 0, 0, Tokens, q, o);
    }

    [Benchmark]
    public void Flash()
    {
        fixed (float* q = _q, o = _out)
            _flash.Run(_pool, _cache, 0, 0, Tokens, q, o);
    }
}
