using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Kiln.Threading;

namespace Kiln.Benchmarks;

/// <summary>
/// The cost of one parallel op: a dispatch of near-empty work to every thread and the barrier after it. A decode
/// step of a 22-layer model runs about 200 such ops, so this is the pool's per-token overhead ÷ 200.
/// Run: dotnet run -c Release --project bench/Kiln.Benchmarks -- --filter '*WorkerPool*'
/// </summary>
[Config(typeof(WorkerPoolBenchmarks.Settings))]
public class WorkerPoolBenchmarks
{
    private sealed class Settings : ManualConfig
    {
        public Settings() => AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("short-inproc"));
    }

    private sealed class Touch : IParallelWork
    {
        public readonly long[] Counts = new long[64 * 8];
        public void Execute(int begin, int end, int worker) => Counts[worker * 8] += end - begin;
    }

    private WorkerPool _pool = null!;
    private readonly Touch _work = new();

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup() => _pool = new WorkerPool(Threads);

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    /// <summary>One op over 64 items split across the threads.</summary>
    [Benchmark]
    public void DispatchAndBarrier() => _pool.For(64, _work);
}
