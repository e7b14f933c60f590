using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Benchmarks;

/// <summary>
/// fp32 GEMM at the shapes of a training step over 256 tokens, with a GFLOP/s column (2·m·n·k per product).
/// Shape "m×n×k" plus the transposes: "NT" is a forward layer (X[T, in] · W[out, in]ᵀ), "NN" the input gradient
/// (dY[T, out] · W[out, in]), "TN" the weight gradient (dY[T, out]ᵀ · X[T, in]).
/// Run: dotnet run -c Release --project bench/Kiln.Benchmarks -- --filter '*Sgemm*'
/// (KILN_BENCH_SHAPES=256x768x3072NT,... and KILN_BENCH_PATHS=Avx2,Avx512 narrow a run).
/// </summary>
[Config(typeof(Settings))]
public class SgemmBenchmarks
{
    private sealed class Settings : ManualConfig
    {
        public Settings()
        {
            AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("short-inproc"));
            AddColumn(new FlopRateColumn(), new CpuTimeFlopRateColumn());
        }
    }

    public static IEnumerable<string> Shapes() =>
        Environment.GetEnvironmentVariable("KILN_BENCH_SHAPES") is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            :
            [
                // GPT-2 small (768 wide, 3072 MLP)
                "256x768x768NT", "256x3072x768NT", "256x768x3072NT", "256x768x3072NN", "768x768x256TN",
                // 6 layers, 384 wide, 1536 MLP
                "256x384x384NT", "256x1536x384NT", "256x384x1536NT", "384x384x256TN",
            ];

    public static IEnumerable<KernelPath> Paths() =>
        Environment.GetEnvironmentVariable("KILN_BENCH_PATHS") is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(Enum.Parse<KernelPath>).ToArray()
            : [KernelPath.Avx512];

    [ParamsSource(nameof(Shapes))]
    public string Shape = "256x768x768NT";

    [ParamsSource(nameof(Paths))]
    public KernelPath Path;

    [Params(1, 2)]
    public int Threads;

    /// <summary>Flops per second of the process's CPU time, × threads, per case (filled in at global cleanup).</summary>
    private static readonly Dictionary<string, double> CpuTimeRates = [];

    private WorkerPool _pool = null!;
    private long _invocations;
    private TimeSpan _cpuAtStart;
    private float[] _a = [], _b = [], _c = [];
    private int _m, _n, _k;
    private bool _transposeA, _transposeB;

    [GlobalSetup]
    public void Setup()
    {
        (_m, _n, _k, _transposeA, _transposeB) = Parse(Shape);
        var rng = new Random(7);
        _a = Random(rng, _m * _k);
        _b = Random(rng, _k * _n);
        _c = new float[_m * _n];
        _pool = new WorkerPool(Threads);
        _invocations = 0;
        _cpuAtStart = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        double cpuSeconds = (System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - _cpuAtStart).TotalSeconds;
        CpuTimeRates[Key(Shape, Path, Threads)] = 2.0 * _m * _n * _k * _invocations / cpuSeconds * Threads / 1e9;
        _pool.Dispose();
    }

    private static string Key(string shape, KernelPath path, int threads) => $"{shape}/{path}/{threads}";

    [Benchmark]
    public void Multiply()
    {
        _invocations++;
        int lda = _transposeA ? _m : _k, ldb = _transposeB ? _k : _n;
        switch (Path)
        {
            case KernelPath.Avx2:
                Sgemm.MultiplyAvx2(_a, lda, _b, ldb, _c, _n, _m, _n, _k, _transposeA, _transposeB, false, _pool);
                break;
            case KernelPath.Avx512:
                Sgemm.MultiplyAvx512(_a, lda, _b, ldb, _c, _n, _m, _n, _k, _transposeA, _transposeB, false, _pool);
                break;
            default:
                Sgemm.MultiplyScalar(_a, lda, _b, ldb, _c, _n, _m, _n, _k, _transposeA, _transposeB, false);
                break;
        }
    }

    private static (int M, int N, int K, bool TransposeA, bool TransposeB) Parse(string shape)
    {
        string[] dims = shape[..^2].Split('x');
        return (int.Parse(dims[0]), int.Parse(dims[1]), int.Parse(dims[2]), shape[^2] == 'T', shape[^1] == 'T');
    }

    private static float[] Random(Random rng, int count)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++)
            x[i] = rng.NextSingle() - 0.5f;
        return x;
    }

    private sealed class FlopRateColumn : IColumn
    {
        public string Id => "GFLOPs";
        public string ColumnName => "GFLOP/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "2·m·n·k floating-point operations per second, in 10⁹";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null)
                return "-";
            var (m, n, k, _, _) = Parse((string)benchmarkCase.Parameters[nameof(Shape)]);
            return (2.0 * m * n * k / report.ResultStatistics.Mean).ToString("F1"); // flops per ns = GFLOP/s
        }

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
    }

    /// <summary>
    /// On a machine shared with other work, wall time mostly measures the scheduler. Flops over the process's CPU
    /// time (× threads) estimate what the cores would do on their own; the pool's spin-waits count as CPU time,
    /// so with 2 threads it errs low.
    /// </summary>
    private sealed class CpuTimeFlopRateColumn : IColumn
    {
        public string Id => "GFLOPsCpu";
        public string ColumnName => "GFLOP/CPU-s×T";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 1;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "2·m·n·k per second of process CPU time, × threads, in 10⁹ (all iterations, warm-up included)";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
        {
            var p = benchmarkCase.Parameters;
            return CpuTimeRates.TryGetValue(Key((string)p[nameof(Shape)], (KernelPath)p[nameof(Path)], (int)p[nameof(Threads)]), out double rate)
                ? rate.ToString("F1")
                : "-";
        }

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
    }
}
