using System.Diagnostics;
using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Quantization;

/// <summary>
/// llama-quantize for GGUF files: reads an F32/F16/BF16 model, quantizes each tensor as
/// <see cref="QuantizationPlan"/> decides, row by row over a worker pool, and streams the result through
/// <see cref="GgufWriter"/> (metadata copied in order, general.quantization_version and general.file_type
/// set last, as llama.cpp does), which writes a temporary file, flushes it to disk and renames it: the output
/// path never holds a half-written file. With the reference quantizers the tensor bytes equal llama-quantize's.
/// </summary>
public static class GgufQuantizer
{
    /// <summary>GGML_QNT_VERSION.</summary>
    public const uint QuantizationVersion = 2;

    // Rows are quantized in chunks of about this many output bytes: large enough that a dispatch over the
    // pool is cheap next to the work, small enough that the buffer stays in a few MiB.
    private const int ChunkBytes = 4 << 20;

    public static QuantizationSummary Quantize(string inputPath, string outputPath, QuantizationOptions options)
    {
        ArgumentException.ThrowIfNullOrEmpty(inputPath);
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Threads < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.Threads, "thread count must be at least 1");
        if (IsSameFile(inputPath, outputPath))
            throw new ArgumentException($"input and output are the same file: {outputPath}", nameof(outputPath));

        var clock = Stopwatch.StartNew();
        using var source = GgufFile.Open(inputPath);
        var plan = QuantizationPlan.Create(source, options);
        var importance = ImportanceFor(plan, options.Importance);

        var writer = new GgufWriter();
        foreach (var (key, value) in source.MetadataList)
            writer.SetMetadata(key, value);
        // gguf_set_val removes a key and appends it, so these two end up last, in this order
        writer.RemoveMetadata("general.quantization_version");
        writer.SetMetadata("general.quantization_version", GgufValue.FromUInt32(QuantizationVersion));
        writer.RemoveMetadata("general.file_type");
        writer.SetMetadata("general.file_type", GgufValue.FromUInt32(options.Mix.FileType));

        using var pool = new WorkerPool(options.Threads);
        var work = new RowChunkWork(options.Threads, plan.Tensors);
        int written = 0;
        foreach (var t in plan.Tensors)
        {
            var info = source.GetTensor(t.Name);
            writer.AddTensor(t.Name, t.TargetType, t.Dimensions, stream =>
            {
                if (t.IsCopied)
                    Copy(source, info, stream);
                else if (options.Precomputed?.GetValueOrDefault(t.Name) is { } bytes)
                    stream.Write(bytes.Length == t.TargetBytes ? bytes
                        : throw new InvalidOperationException($"tensor '{t.Name}': {bytes.Length} precomputed bytes, {t.TargetBytes} planned"));
                else if (options.Gptq is { } gptq && GptqQuantizer.Supports(t.TargetType) && t.Dimensions.Length == 2
                         && gptq.Hessian(t.Name) is { } hessian)
                    QuantizeGptq(pool, source, info, t, hessian, gptq, stream);
                else
                    work.Run(pool, source, info, t, stream, importance.GetValueOrDefault(t.Name));
                options.TensorWritten?.Invoke(new TensorProgress(t, ++written, plan.Tensors.Count));
            });
        }
        writer.Write(outputPath);
        return new QuantizationSummary(plan.Tensors, source.FileLength, new FileInfo(outputPath).Length, clock.Elapsed);
    }

    /// <summary>
    /// Per-column weights of each quantized tensor the imatrix covers, checked before anything is written: an
    /// entry whose length is not the tensor's row length, or a matrix that covers none of the model's tensors,
    /// means it was made for another model (InvalidDataException).
    /// </summary>
    internal static Dictionary<string, float[]> ImportanceFor(QuantizationPlan plan, ImportanceMatrix? matrix)
    {
        var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
        if (matrix is null)
            return weights;
        foreach (var t in plan.Tensors.Where(t => !t.IsCopied))
        {
            if (matrix.ColumnWeights(t.Name, t.RowLength) is { } w)
                weights[t.Name] = w;
        }
        if (!matrix.Entries.Keys.Any(k => plan.Tensors.Any(t => t.Name == k)))
            throw new InvalidDataException("the importance matrix names none of this model's tensors: it was made for another model");
        return weights;
    }

    /// <summary>The whole tensor as floats, GPTQ over the pool, then its rows to the stream.</summary>
    private static unsafe void QuantizeGptq(WorkerPool pool, GgufFile source, GgufTensorInfo info, TensorQuantization t,
        double[] hessian, GptqOptions gptq, Stream stream)
    {
        int rows = checked((int)t.Rows), columns = checked((int)t.RowLength);
        if ((long)columns * columns != hessian.Length)
            throw new InvalidDataException($"tensor '{t.Name}': rows of {columns} but a calibration Hessian of {Math.Sqrt(hessian.Length)} columns");
        var weights = new float[(long)rows * columns];
        byte* p = source.GetTensorPointer(info);
        long sourceRowBytes = GgmlTypeTraits.RowBytes(t.SourceType, columns);
        for (int r = 0; r < rows; r++)
            RowKernels.Dequantize(t.SourceType, new ReadOnlySpan<byte>(p + r * sourceRowBytes, (int)sourceRowBytes), weights.AsSpan(r * columns, columns));
        var output = new byte[t.TargetBytes];
        GptqQuantizer.Quantize(t.TargetType, weights, rows, columns, hessian, gptq.Damp, gptq.ActOrder, output, pool, gptq.SearchScales);
        stream.Write(output);
    }

    /// <summary>True when both paths name one file, also through a symbolic link to it.</summary>
    public static bool IsSameFile(string a, string b) =>
        string.Equals(Resolve(a), Resolve(b), StringComparison.Ordinal);

    private static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        return File.Exists(full) ? File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full : full;
    }

    internal static unsafe void Copy(GgufFile source, GgufTensorInfo info, Stream stream)
    {
        byte* p = source.GetTensorPointer(info);
        for (long done = 0; done < info.ByteSize;)
        {
            int n = (int)Math.Min(ChunkBytes, info.ByteSize - done);
            stream.Write(new ReadOnlySpan<byte>(p + done, n));
            done += n;
        }
    }

    /// <summary>
    /// Quantizes a run of rows of one tensor into a shared buffer; one instance serves the whole file, so the
    /// buffer and the per-worker float rows are allocated once.
    /// </summary>
    private sealed unsafe class RowChunkWork : IParallelWork
    {
        private readonly byte[] _output;
        private readonly float[][] _rows;
        private byte* _source;
        private long _sourceRowBytes;
        private int _outputRowBytes;
        private int _rowLength;
        private GgmlType _sourceType, _targetType;
        private float[]? _importance;

        public RowChunkWork(int threads, IReadOnlyList<TensorQuantization> tensors)
        {
            long longestRow = 1, largestOutputRow = 1;
            foreach (var t in tensors.Where(t => !t.IsCopied))
            {
                if (t.RowLength > int.MaxValue / sizeof(float))
                    throw new InvalidDataException($"tensor '{t.Name}': rows of {t.RowLength} elements are too long to quantize");
                longestRow = Math.Max(longestRow, t.RowLength);
                largestOutputRow = Math.Max(largestOutputRow, GgmlTypeTraits.RowBytes(t.TargetType, t.RowLength));
            }
            _output = new byte[Math.Max(ChunkBytes, largestOutputRow)];
            _rows = new float[threads][];
            for (int i = 0; i < threads; i++)
                _rows[i] = new float[longestRow];
        }

        public void Run(WorkerPool pool, GgufFile file, GgufTensorInfo info, TensorQuantization t, Stream stream, float[]? importance)
        {
            _importance = importance;
            _source = file.GetTensorPointer(info);
            _sourceType = t.SourceType;
            _targetType = t.TargetType;
            _rowLength = (int)t.RowLength;
            _sourceRowBytes = GgmlTypeTraits.RowBytes(t.SourceType, t.RowLength);
            _outputRowBytes = (int)GgmlTypeTraits.RowBytes(t.TargetType, t.RowLength);
            int rowsPerChunk = Math.Max(1, _output.Length / _outputRowBytes);
            for (long first = 0; first < t.Rows; first += rowsPerChunk)
            {
                int rows = (int)Math.Min(rowsPerChunk, t.Rows - first);
                pool.For(rows, this);
                stream.Write(_output, 0, rows * _outputRowBytes);
                _source += rows * _sourceRowBytes;
            }
        }

        public void Execute(int begin, int end, int worker)
        {
            Span<float> scratch = _rows[worker].AsSpan(0, _rowLength);
            for (int r = begin; r < end; r++)
            {
                var raw = new ReadOnlySpan<byte>(_source + r * _sourceRowBytes, (int)_sourceRowBytes);
                ReadOnlySpan<float> x;
                if (_sourceType == GgmlType.F32)
                {
                    x = MemoryMarshal.Cast<byte, float>(raw);
                }
                else
                {
                    RowKernels.Dequantize(_sourceType, raw, scratch);
                    x = scratch;
                }
                RowQuantizer.Quantize(_targetType, x, _output.AsSpan(r * _outputRowBytes, _outputRowBytes), _importance);
            }
        }
    }
}
