using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Threading;
using Kiln.Tokenizers;

namespace Kiln.Quantization;

/// <summary>
/// GPTQ layer by layer, as the paper runs it: block l is calibrated on the outputs of blocks 0..l-1 already
/// quantized, so each layer's compensation also absorbs the error the layers before it left in its inputs.
/// Per block: a model whose earlier blocks hold their quantized bytes (a temporary GGUF, deleted after) runs the
/// calibration text, a <see cref="HessianCollector"/> keeps that block's four input Hessians only, and the block's
/// weights are quantized (GPTQ where the target type allows, round-to-nearest otherwise). Memory: one layer's
/// Hessians, plus the quantized bytes so far. Non-block tensors (embeddings, output) are left to the caller.
/// </summary>
public static class LayerwiseGptq
{
    /// <summary>The quantized bytes of every block tensor the plan quantizes, by name, for <see cref="QuantizationOptions.Precomputed"/>.</summary>
    public static Dictionary<string, byte[]> Run(string inputPath, QuantizationOptions options, GptqCalibration calibration, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(calibration);
        using var source = GgufFile.Open(inputPath);
        var plan = QuantizationPlan.Create(source, options);
        // a foreign imatrix is refused before the calibration passes, not after them
        GgufQuantizer.ImportanceFor(plan, options.Importance);
        var done = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        using var pool = new WorkerPool(options.Threads);
        int blocks = (int)(source.TryGetInteger($"{source.TryGetString("general.architecture")}.block_count") ?? 0);
        string temp = Path.Combine(Path.GetTempPath(), $"kiln-gptq-{Guid.NewGuid():N}.gguf");
        try
        {
            for (int l = 0; l < blocks; l++)
            {
                if (l > 0)
                    WritePartial(source, done, plan, temp);
                var collector = new HessianCollector(l);
                using (var model = LlamaModel.Load(l == 0 ? inputPath : temp, GgufLoadMode.Map))
                {
                    var tokenizer = Tokenizer.FromGguf(model.File);
                    int n = calibration.ContextLength > 0 ? calibration.ContextLength : Math.Min(512, model.Config.ContextLength);
                    int chunks = CalibrationRun.Run(model, tokenizer, calibration.Text, n, calibration.Samples, options.Threads, collector);
                    log?.Invoke($"GPTQ layer {l + 1}/{blocks}: {chunks} chunks of {n} tokens, Hessians {collector.ByteSize / 1048576.0:F1} MiB");
                }
                foreach (var t in plan.Tensors.Where(t => !t.IsCopied && LayerOf(t.Name) == l))
                    done[t.Name] = QuantizeTensor(source, t, collector, options, calibration, pool);
            }
        }
        finally
        {
            File.Delete(temp);
        }
        return done;
    }

    private static unsafe byte[] QuantizeTensor(GgufFile source, TensorQuantization t, HessianCollector collector,
        QuantizationOptions options, GptqCalibration calibration, WorkerPool pool)
    {
        int rows = checked((int)t.Rows), columns = checked((int)t.RowLength);
        var weights = new float[(long)rows * columns];
        byte* p = source.GetTensorPointer(source.GetTensor(t.Name));
        int sourceRowBytes = (int)GgmlTypeTraits.RowBytes(t.SourceType, columns);
        for (int r = 0; r < rows; r++)
            RowKernels.Dequantize(t.SourceType, new ReadOnlySpan<byte>(p + (long)r * sourceRowBytes, sourceRowBytes), weights.AsSpan(r * columns, columns));
        var output = new byte[t.TargetBytes];
        if (GptqQuantizer.Supports(t.TargetType) && t.Dimensions.Length == 2 && collector.Hessian(t.Name) is { } h)
        {
            GptqQuantizer.Quantize(t.TargetType, weights, rows, columns, h, calibration.Damp, calibration.ActOrder, output, pool, calibration.SearchScales);
        }
        else
        {
            float[]? importance = options.Importance?.ColumnWeights(t.Name, columns);
            int rowBytes = (int)GgmlTypeTraits.RowBytes(t.TargetType, columns);
            for (int r = 0; r < rows; r++)
                RowQuantizer.Quantize(t.TargetType, weights.AsSpan(r * columns, columns), output.AsSpan(r * rowBytes, rowBytes), importance);
        }
        return output;
    }

    /// <summary>The source model with the finished tensors in their quantized form.</summary>
    private static void WritePartial(GgufFile source, Dictionary<string, byte[]> done, QuantizationPlan plan, string path)
    {
        var writer = new GgufWriter();
        foreach (var (key, value) in source.MetadataList)
            writer.SetMetadata(key, value);
        var targets = plan.Tensors.ToDictionary(t => t.Name);
        foreach (var info in source.Tensors)
        {
            if (done.TryGetValue(info.Name, out var bytes))
                writer.AddTensor(info.Name, targets[info.Name].TargetType, info.Dimensions, bytes);
            else
                writer.AddTensor(info.Name, info.Type, info.Dimensions, stream => GgufQuantizer.Copy(source, info, stream));
        }
        writer.Write(path);
    }

    private static int LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal))
            return -1;
        int end = name.IndexOf('.', 4);
        return end > 4 && int.TryParse(name.AsSpan(4, end - 4), out int layer) ? layer : -1;
    }
}
