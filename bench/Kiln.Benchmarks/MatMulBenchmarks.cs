using BenchmarkDotNet.Attributes;
using Kiln.Compute;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Benchmarks;

/// <summary>
/// Whole matrix products as the model runs them: a TinyLlama feed-forward matrix (5632 × 2048) times one token
/// (decode: bound by reading the weights, so GB/s of weights is the figure to compare with the machine's read
/// bandwidth) or 64 tokens (prompt: bound by arithmetic; multiply GB/s by 64·2/bytes-per-weight for FLOP/s).
/// Run: dotnet run -c Release --project bench/Kiln.Benchmarks -- --filter '*MatMul*' (KILN_BENCH_TYPES narrows).
/// </summary>
[Config(typeof(KernelBenchmarkConfig))]
public unsafe class MatMulBenchmarks : IKernelBenchmark
{
    private const int Columns = 2048;
    private const int Rows = 5632;

    [ParamsSource(nameof(Types))]
    public GgmlType Type;

    [Params(1, 64)]
    public int Tokens;

    [Params(1, 2)]
    public int Threads;

    public static IEnumerable<GgmlType> Types() =>
        Environment.GetEnvironmentVariable("KILN_BENCH_TYPES") is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(Enum.Parse<GgmlType>).ToArray()
            : [GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    private byte[] _weights = [];
    private WeightMatrix _matrix = null!;
    private WorkerPool _pool = null!;
    private MatMul _matmul = null!;
    private float[] _x = [];
    private float[] _y = [];

    [GlobalSetup]
    public void Setup()
    {
        int rowBytes = (int)GgmlTypeTraits.RowBytes(Type, Columns);
        _weights = GC.AllocateUninitializedArray<byte>(rowBytes * Rows, pinned: true);
        var rng = new Random(7);
        var f = new float[Columns];
        for (int r = 0; r < Rows; r++)
        {
            for (int i = 0; i < Columns; i++)
                f[i] = (rng.NextSingle() - 0.5f) * 0.1f;
            RowQuantizer(Type)(f, _weights.AsSpan(r * rowBytes, rowBytes));
        }
        fixed (byte* p = _weights)
            _matrix = new WeightMatrix("ffn_up", Type, Rows, Columns, p); // pinned: the pointer stays valid
        _x = new float[Tokens * Columns];
        for (int i = 0; i < _x.Length; i++)
            _x[i] = rng.NextSingle() * 2 - 1;
        _y = new float[Tokens * Rows];
        _pool = new WorkerPool(Threads);
        _matmul = new MatMul(_pool);
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    private delegate void Quantizer(ReadOnlySpan<float> src, Span<byte> dst);

    private static Quantizer RowQuantizer(GgmlType type) => type switch
    {
        GgmlType.F16 => F16.Quantize,
        GgmlType.Q8_0 => Q8_0.Quantize,
        GgmlType.Q4_0 => Q4_0.Quantize,
        GgmlType.Q4_K => Q4_K.Quantize,
        GgmlType.Q5_K => Q5_K.Quantize,
        GgmlType.Q6_K => Q6_K.Quantize,
        _ => throw new NotSupportedException($"no benchmark quantizer for {type}"),
    };

    public long BytesRead(string method) => (long)GgmlTypeTraits.RowBytes(Type, Columns) * Rows;

    [Benchmark]
    public void Product() => _matmul.Run(_matrix, _x, Tokens, _y);
}
