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
            AddColumn(new FlopRateColumn());
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

    private WorkerPool _pool = null!;
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
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark]
    public void Multiply()
    {
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
}
