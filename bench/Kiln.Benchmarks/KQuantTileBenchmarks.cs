using BenchmarkDotNet.Attributes;
using Kiln.Tensors;

namespace Kiln.Benchmarks;

/// <summary>
/// The K-quant 1 × 4 tiles against the one-row dots they replace in batches: 64 weight rows of 2048 columns
/// (TinyLlama's width) times four Q8_K tokens, either as 256 one-row dots or as 64 tiles. GB/s counts the weight
/// bytes once per token (what the one-row dots read), so the two methods' figures compare directly.
/// Run: dotnet run -c Release --project bench/Kiln.Benchmarks -- --filter '*KQuantTile*'
/// </summary>
[Config(typeof(KernelBenchmarkConfig))]
public class KQuantTileBenchmarks : IKernelBenchmark
{
    private const int Columns = 2048;
    private const int Rows = 64;
    private const int Tokens = 4;

    [Params(GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K)]
    public GgmlType Type;

    private byte[] _weights = [];
    private byte[] _xq = [];
    private float[] _out = [];
    private int _rowBytes;
    private int _activationBytes;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(11);
        _rowBytes = (int)GgmlTypeTraits.RowBytes(Type, Columns);
        _weights = new byte[_rowBytes * Rows];
        var f = new float[Columns];
        for (int r = 0; r < Rows; r++)
        {
            for (int i = 0; i < Columns; i++)
                f[i] = (rng.NextSingle() - 0.5f) * 0.1f;
            Quantize(Type, f, _weights.AsSpan(r * _rowBytes, _rowBytes));
        }
        _activationBytes = (int)RowKernels.ActivationBytes(Type, Columns);
        _xq = new byte[Tokens * _activationBytes];
        for (int t = 0; t < Tokens; t++)
        {
            for (int i = 0; i < Columns; i++)
                f[i] = rng.NextSingle() * 2 - 1;
            Q8_K.Quantize(f, _xq.AsSpan(t * _activationBytes, _activationBytes));
        }
        _out = new float[Tokens * Rows];
    }

    private static void Quantize(GgmlType type, ReadOnlySpan<float> f, Span<byte> row)
    {
        switch (type)
        {
            case GgmlType.Q4_K: Q4_K.Quantize(f, row); break;
            case GgmlType.Q5_K: Q5_K.Quantize(f, row); break;
            default: Q6_K.Quantize(f, row); break;
        }
    }

    // BytesRead runs on a fresh instance with only the parameters set, so it cannot use the fields Setup fills
    public long BytesRead(string method) => GgmlTypeTraits.RowBytes(Type, Columns) * Rows * Tokens;

    [Benchmark(Baseline = true)]
    public void OneRowDots()
    {
        for (int r = 0; r < Rows; r++)
        {
            var row = _weights.AsSpan(r * _rowBytes, _rowBytes);
            for (int t = 0; t < Tokens; t++)
                _out[t * Rows + r] = RowKernels.DotQuantized(Type, row, _xq.AsSpan(t * _activationBytes, _activationBytes));
        }
    }

    [Benchmark]
    public void Tiles()
    {
        Span<float> tile = stackalloc float[Tokens];
        for (int r = 0; r < Rows; r++)
        {
            var row = _weights.AsSpan(r * _rowBytes, _rowBytes);
            switch (Type)
            {
                case GgmlType.Q4_K: Q4_K.DotQ8KTile1x4(row, _xq, _activationBytes, tile); break;
                case GgmlType.Q5_K: Q5_K.DotQ8KTile1x4(row, _xq, _activationBytes, tile); break;
                default: Q6_K.DotQ8KTile1x4(row, _xq, _activationBytes, tile); break;
            }
            for (int t = 0; t < Tokens; t++)
                _out[t * Rows + r] = tile[t];
        }
    }
}
