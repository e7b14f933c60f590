using BenchmarkDotNet.Attributes;
using Kiln.Tensors;

namespace Kiln.Benchmarks;

/// <summary>
/// Each row kernel over a 256 × 4096 weight matrix (1–4 MB: L2/L3 resident, like one layer's slice per thread),
/// per implementation, so AVX2 and AVX-512 can be compared on the machine at hand.
/// </summary>
[Config(typeof(KernelBenchmarkConfig))]
public class RowKernelBenchmarks : IKernelBenchmark
{
    private const int N = 4096;
    private const int Rows = 256;

    [ParamsSource(nameof(Types))]
    public GgmlType Type;

    [ParamsSource(nameof(Paths))]
    public KernelPath Path;

    // KILN_BENCH_TYPES=Q4_0,Q8_0 / KILN_BENCH_PATHS=Avx2,Avx512 narrow a run (the full matrix takes minutes).
    public static IEnumerable<GgmlType> Types() =>
        FromEnvironment("KILN_BENCH_TYPES", [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0,
            GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
            GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K]);

    public static IEnumerable<KernelPath> Paths() =>
        FromEnvironment("KILN_BENCH_PATHS", [KernelPath.Scalar, KernelPath.Avx2, KernelPath.Avx512]);

    private static IEnumerable<T> FromEnvironment<T>(string name, T[] all) where T : struct, Enum =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(Enum.Parse<T>).ToArray()
            : all;

    private byte[] _weights = [];
    private float[] _x = [];
    private byte[] _xq = [];
    private float[] _out = [];
    private int _rowBytes;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        var f = new float[N];
        _rowBytes = (int)GgmlTypeTraits.RowBytes(Type, N);
        _weights = new byte[_rowBytes * Rows];
        for (int r = 0; r < Rows; r++)
        {
            for (int i = 0; i < N; i++)
                f[i] = rng.NextSingle() - 0.5f;
            Store(Type, f, _weights.AsSpan(r * _rowBytes, _rowBytes));
        }
        _x = new float[N];
        for (int i = 0; i < N; i++)
            _x[i] = rng.NextSingle() * 2 - 1;
        _xq = new byte[RowKernels.ActivationBytes(Type, N)];
        RowKernels.QuantizeActivations(Type, _x, _xq);
        _out = new float[N];
    }

    private static void Store(GgmlType type, float[] f, Span<byte> row)
    {
        if (type == GgmlType.F32)
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.AsSpan()).CopyTo(row);
        else if (type == GgmlType.Q4_0)
            Q4_0.Quantize(f, row);
        else if (type == GgmlType.Q4_1)
            Q4_1.Quantize(f, row);
        else if (type == GgmlType.Q5_0)
            Q5_0.Quantize(f, row);
        else if (type == GgmlType.Q5_1)
            Q5_1.Quantize(f, row);
        else if (type == GgmlType.F16)
            F16.Quantize(f, row);
        else if (RowKernels.ActivationType(type) == GgmlType.Q8_K)
            RandomKQuantRow(type, row);
        else
            RowKernels.QuantizeActivations(type, f, row); // BF16 and Q8_0 store weights as their activations
    }

    /// <summary>K-quants have no quantizer here: random quants and packed scales, small finite fp16 super-block scales.</summary>
    private static void RandomKQuantRow(GgmlType type, Span<byte> row)
    {
        var rng = new Random(row.Length);
        rng.NextBytes(row);
        int blockBytes = GgmlTypeTraits.BlockBytes(type);
        int[] halves = type switch
        {
            GgmlType.Q2_K => [80, 82],
            GgmlType.Q3_K => [108],
            GgmlType.Q6_K => [208],
            _ => [0, 2],
        };
        for (int b = 0; b < row.Length / blockBytes; b++)
            foreach (int at in halves)
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(row[(b * blockBytes + at)..], BitConverter.HalfToUInt16Bits((Half)(0.001f * (1 + rng.NextSingle()))));
    }

    public long BytesRead(string method) => method switch
    {
        nameof(QuantizeActivations) => (long)N * sizeof(float) * Rows,
        _ => (long)GgmlTypeTraits.RowBytes(Type, N) * Rows,
    };

    [Benchmark]
    public float DotFloat()
    {
        float s = 0;
        for (int r = 0; r < Rows; r++)
            s += DotFloat(_weights.AsSpan(r * _rowBytes, _rowBytes), _x);
        return s;
    }

    [Benchmark]
    public float DotQuantized()
    {
        float s = 0;
        for (int r = 0; r < Rows; r++)
            s += DotQuantized(_weights.AsSpan(r * _rowBytes, _rowBytes), _xq);
        return s;
    }

    [Benchmark]
    public void Dequantize()
    {
        for (int r = 0; r < Rows; r++)
            Dequantize(_weights.AsSpan(r * _rowBytes, _rowBytes), _out);
    }

    /// <summary>Activation conversion, 256 times to match the others' scale (llama.cpp does it once per matmul).</summary>
    [Benchmark]
    public void QuantizeActivations()
    {
        for (int r = 0; r < Rows; r++)
            QuantizeActivations(_x, _xq);
    }

    private float DotFloat(ReadOnlySpan<byte> w, float[] x) => (Type, Path) switch
    {
        (GgmlType.F32, KernelPath.Scalar) => F32.DotScalar(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(w), x),
        (GgmlType.F32, KernelPath.Avx2) => F32.DotAvx2(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(w), x),
        (GgmlType.F32, _) => F32.DotAvx2(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(w), x), // one order, one SIMD path
        (GgmlType.F16, KernelPath.Scalar) => F16.DotScalar(w, x),
        (GgmlType.F16, KernelPath.Avx2) => F16.DotAvx2(w, x),
        (GgmlType.F16, _) => F16.DotAvx512(w, x),
        (GgmlType.BF16, KernelPath.Scalar) => BF16.DotScalar(w, x),
        (GgmlType.BF16, KernelPath.Avx2) => BF16.DotAvx2(w, x),
        (GgmlType.BF16, _) => BF16.DotAvx512(w, x),
        (GgmlType.Q8_0, KernelPath.Scalar) => Q8_0.DotScalar(w, x),
        (GgmlType.Q8_0, KernelPath.Avx2) => Q8_0.DotAvx2(w, x),
        (GgmlType.Q8_0, _) => Q8_0.DotAvx512(w, x),
        (GgmlType.Q4_1, KernelPath.Scalar) => Q4_1.DotScalar(w, x),
        (GgmlType.Q4_1, KernelPath.Avx2) => Q4_1.DotAvx2(w, x),
        (GgmlType.Q4_1, _) => Q4_1.DotAvx512(w, x),
        (GgmlType.Q5_0, KernelPath.Scalar) => Q5_0.DotScalar(w, x),
        (GgmlType.Q5_0, KernelPath.Avx2) => Q5_0.DotAvx2(w, x),
        (GgmlType.Q5_0, _) => Q5_0.DotAvx512(w, x),
        (GgmlType.Q5_1, KernelPath.Scalar) => Q5_1.DotScalar(w, x),
        (GgmlType.Q5_1, KernelPath.Avx2) => Q5_1.DotAvx2(w, x),
        (GgmlType.Q5_1, _) => Q5_1.DotAvx512(w, x),
        (GgmlType.Q2_K, KernelPath.Scalar) => Q2_K.DotScalar(w, x),
        (GgmlType.Q2_K, _) => Q2_K.DotAvx2(w, x),
        (GgmlType.Q3_K, KernelPath.Scalar) => Q3_K.DotScalar(w, x),
        (GgmlType.Q3_K, _) => Q3_K.DotAvx2(w, x),
        (GgmlType.Q4_K, KernelPath.Scalar) => Q4_K.DotScalar(w, x),
        (GgmlType.Q4_K, _) => Q4_K.DotAvx2(w, x),
        (GgmlType.Q5_K, KernelPath.Scalar) => Q5_K.DotScalar(w, x),
        (GgmlType.Q5_K, _) => Q5_K.DotAvx2(w, x),
        (GgmlType.Q6_K, KernelPath.Scalar) => Q6_K.DotScalar(w, x),
        (GgmlType.Q6_K, _) => Q6_K.DotAvx2(w, x),
        (_, KernelPath.Scalar) => Q4_0.DotScalar(w, x),
        (_, KernelPath.Avx2) => Q4_0.DotAvx2(w, x),
        _ => Q4_0.DotAvx512(w, x),
    };

    private float DotQuantized(ReadOnlySpan<byte> w, byte[] xq) => (Type, Path) switch
    {
        (GgmlType.F32, _) => DotFloat(w, _x),
        (GgmlType.F16, KernelPath.Scalar) => F16.DotScalar(w, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(xq)),
        (GgmlType.F16, KernelPath.Avx2) => F16.DotAvx2(w, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(xq)),
        (GgmlType.F16, _) => F16.DotAvx512(w, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(xq)),
        (GgmlType.BF16, KernelPath.Scalar) => BF16.DotBF16Scalar(w, xq),
        (GgmlType.BF16, KernelPath.Avx2) => BF16.DotBF16Avx2(w, xq),
        (GgmlType.BF16, _) => BF16.DotBF16Avx512(w, xq),
        (GgmlType.Q8_0, KernelPath.Scalar) => Q8_0.DotQ8Scalar(w, xq),
        (GgmlType.Q8_0, KernelPath.Avx2) => Q8_0.DotQ8Avx2(w, xq),
        (GgmlType.Q8_0, _) => Q8_0.DotQ8Avx512(w, xq),
        (GgmlType.Q4_1, KernelPath.Scalar) => Q4_1.DotQ8Scalar(w, xq),
        (GgmlType.Q4_1, KernelPath.Avx2) => Q4_1.DotQ8Avx2(w, xq),
        (GgmlType.Q4_1, _) => Q4_1.DotQ8Avx512(w, xq),
        (GgmlType.Q5_0, KernelPath.Scalar) => Q5_0.DotQ8Scalar(w, xq),
        (GgmlType.Q5_0, KernelPath.Avx2) => Q5_0.DotQ8Avx2(w, xq),
        (GgmlType.Q5_0, _) => Q5_0.DotQ8Avx512(w, xq),
        (GgmlType.Q5_1, KernelPath.Scalar) => Q5_1.DotQ8Scalar(w, xq),
        (GgmlType.Q5_1, KernelPath.Avx2) => Q5_1.DotQ8Avx2(w, xq),
        (GgmlType.Q5_1, _) => Q5_1.DotQ8Avx512(w, xq),
        // the K-quants have AVX2 kernels only (512-bit variants measured slower on Zen 4): Avx512 rows run them too
        (GgmlType.Q2_K, KernelPath.Scalar) => Q2_K.DotQ8KScalar(w, xq),
        (GgmlType.Q2_K, _) => Q2_K.DotQ8KAvx2(w, xq),
        (GgmlType.Q3_K, KernelPath.Scalar) => Q3_K.DotQ8KScalar(w, xq),
        (GgmlType.Q3_K, _) => Q3_K.DotQ8KAvx2(w, xq),
        (GgmlType.Q4_K, KernelPath.Scalar) => Q4_K.DotQ8KScalar(w, xq),
        (GgmlType.Q4_K, _) => Q4_K.DotQ8KAvx2(w, xq),
        (GgmlType.Q5_K, KernelPath.Scalar) => Q5_K.DotQ8KScalar(w, xq),
        (GgmlType.Q5_K, _) => Q5_K.DotQ8KAvx2(w, xq),
        (GgmlType.Q6_K, KernelPath.Scalar) => Q6_K.DotQ8KScalar(w, xq),
        (GgmlType.Q6_K, _) => Q6_K.DotQ8KAvx2(w, xq),
        (_, KernelPath.Scalar) => Q4_0.DotQ8Scalar(w, xq),
        (_, KernelPath.Avx2) => Q4_0.DotQ8Avx2(w, xq),
        _ => Q4_0.DotQ8Avx512(w, xq),
    };

    private void Dequantize(ReadOnlySpan<byte> w, float[] dst)
    {
        switch (Type, Path)
        {
            case (GgmlType.F32, _): RowKernels.Dequantize(Type, w, dst); break;
            case (GgmlType.F16, KernelPath.Scalar): F16.DequantizeScalar(w, dst); break;
            case (GgmlType.F16, KernelPath.Avx2): F16.DequantizeAvx2(w, dst); break;
            case (GgmlType.F16, _): F16.DequantizeAvx512(w, dst); break;
            case (GgmlType.BF16, KernelPath.Scalar): BF16.DequantizeScalar(w, dst); break;
            case (GgmlType.BF16, KernelPath.Avx2): BF16.DequantizeAvx2(w, dst); break;
            case (GgmlType.BF16, _): BF16.DequantizeAvx512(w, dst); break;
            case (GgmlType.Q8_0, KernelPath.Scalar): Q8_0.DequantizeScalar(w, dst); break;
            case (GgmlType.Q8_0, KernelPath.Avx2): Q8_0.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q8_0, _): Q8_0.DequantizeAvx512(w, dst); break;
            case (GgmlType.Q4_1, KernelPath.Scalar): Q4_1.DequantizeScalar(w, dst); break;
            case (GgmlType.Q4_1, KernelPath.Avx2): Q4_1.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q4_1, _): Q4_1.DequantizeAvx512(w, dst); break;
            case (GgmlType.Q5_0, KernelPath.Scalar): Q5_0.DequantizeScalar(w, dst); break;
            case (GgmlType.Q5_0, KernelPath.Avx2): Q5_0.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q5_0, _): Q5_0.DequantizeAvx512(w, dst); break;
            case (GgmlType.Q5_1, KernelPath.Scalar): Q5_1.DequantizeScalar(w, dst); break;
            case (GgmlType.Q5_1, KernelPath.Avx2): Q5_1.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q5_1, _): Q5_1.DequantizeAvx512(w, dst); break;
            case (GgmlType.Q2_K, KernelPath.Scalar): Q2_K.DequantizeScalar(w, dst); break;
            case (GgmlType.Q2_K, _): Q2_K.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q3_K, KernelPath.Scalar): Q3_K.DequantizeScalar(w, dst); break;
            case (GgmlType.Q3_K, _): Q3_K.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q4_K, KernelPath.Scalar): Q4_K.DequantizeScalar(w, dst); break;
            case (GgmlType.Q4_K, _): Q4_K.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q5_K, KernelPath.Scalar): Q5_K.DequantizeScalar(w, dst); break;
            case (GgmlType.Q5_K, _): Q5_K.DequantizeAvx2(w, dst); break;
            case (GgmlType.Q6_K, KernelPath.Scalar): Q6_K.DequantizeScalar(w, dst); break;
            case (GgmlType.Q6_K, _): Q6_K.DequantizeAvx2(w, dst); break;
            case (_, KernelPath.Scalar): Q4_0.DequantizeScalar(w, dst); break;
            case (_, KernelPath.Avx2): Q4_0.DequantizeAvx2(w, dst); break;
            default: Q4_0.DequantizeAvx512(w, dst); break;
        }
    }

    private void QuantizeActivations(float[] x, byte[] dst)
    {
        switch (RowKernels.ActivationType(Type), Path)
        {
            case (GgmlType.F32, _): RowKernels.QuantizeActivations(Type, x, dst); break;
            case (GgmlType.BF16, KernelPath.Scalar): BF16.QuantizeScalar(x, dst); break;
            case (GgmlType.BF16, KernelPath.Avx2): BF16.QuantizeAvx2(x, dst); break;
            case (GgmlType.BF16, _): BF16.QuantizeAvx512(x, dst); break;
            case (GgmlType.Q8_1, KernelPath.Scalar): Q8_1.QuantizeScalar(x, dst); break;
            case (GgmlType.Q8_1, KernelPath.Avx2): Q8_1.QuantizeAvx2(x, dst); break;
            case (GgmlType.Q8_1, _): Q8_1.QuantizeAvx512(x, dst); break;
            case (GgmlType.Q8_K, KernelPath.Scalar): Q8_K.QuantizeScalar(x, dst); break;
            case (GgmlType.Q8_K, _): Q8_K.QuantizeAvx2(x, dst); break;
            case (_, KernelPath.Scalar): Q8_0.QuantizeScalar(x, dst); break;
            case (_, KernelPath.Avx2): Q8_0.QuantizeAvx2(x, dst); break;
            default: Q8_0.QuantizeAvx512(x, dst); break;
        }
    }
}
