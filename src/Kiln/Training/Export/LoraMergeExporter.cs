using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Models.Lora;
using Kiln.Tensors;

namespace Kiln.Training.Export;

/// <summary>
/// Bakes LoRA adapters into a base GGUF: W' = W + scale·B·A for every adapted matrix, computed row by row from the
/// dequantized base row, then written as F32, F16 or requantized to the base tensor's own type (<c>null</c> type).
/// Every other tensor and all metadata are copied unchanged, so the result loads wherever the base did.
/// </summary>
public static class LoraMergeExporter
{
    public static void Merge(string basePath, IReadOnlyList<LoraAdapter> adapters, string outPath, GgmlType? type)
    {
        if (type is { } t && t != GgmlType.F32 && t != GgmlType.F16)
            throw new ArgumentException($"merged matrices are written as f32, f16 or the base type, not {GgmlTypeTraits.Name(t)}", nameof(type));
        using var file = GgufFile.Open(basePath);
        var config = LlamaConfig.FromGguf(file);
        foreach (var a in adapters)
            a.Validate(config, basePath);
        var w = new GgufWriter();
        foreach (var (key, value) in file.MetadataList)
            w.SetMetadata(key, value);
        foreach (var info in file.Tensors)
        {
            var updates = LoraTargetNames.TryParseTensorName(info.Name, out int layer, out var target)
                ? adapters.Select(a => (Weight: a.Find(layer, target), Scale: a.Find(layer, target) is { } lw ? a.ScaleOf(lw) : 0f))
                    .Where(u => u.Weight is not null).Select(u => (u.Weight!, u.Scale)).ToArray()
                : [];
            if (updates.Length == 0)
            {
                var bytes = file.GetTensorBytes(info).ToArray();
                w.AddTensor(info.Name, info.Type, info.Dimensions, bytes);
                continue;
            }
            GgmlType outType = type ?? info.Type;
            var source = info;
            w.AddTensor(info.Name, outType, info.Dimensions, stream => WriteMerged(stream, file, source, updates, outType));
        }
        w.Write(outPath);
    }

    private static void WriteMerged(Stream stream, GgufFile file, GgufTensorInfo info, (LoraWeight Weight, float Scale)[] updates, GgmlType outType)
    {
        int cols = checked((int)info.Dimensions[0]), rows = checked((int)info.Dimensions[1]);
        int inRowBytes = checked((int)GgmlTypeTraits.RowBytes(info.Type, cols));
        var outRow = new byte[GgmlTypeTraits.RowBytes(outType, cols)];
        var row = new float[cols];
        var data = file.GetTensorBytes(info).ToArray();
        for (int j = 0; j < rows; j++)
        {
            RowKernels.Dequantize(info.Type, data.AsSpan(j * inRowBytes, inRowBytes), row);
            foreach (var (lw, scale) in updates)
            {
                // W'[j, :] += scale · Σ_q B[j, q]·A[q, :]
                for (int q = 0; q < lw.Rank; q++)
                {
                    float c = scale * lw.B[j * lw.Rank + q];
                    var a = lw.A.AsSpan(q * cols, cols);
                    for (int k = 0; k < cols; k++)
                        row[k] += c * a[k];
                }
            }
            Quantize(outType, row, outRow);
            stream.Write(outRow);
        }
    }

    private static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(src).CopyTo(dst); break;
            case GgmlType.F16: F16.Quantize(src, dst); break;
            case GgmlType.BF16: BF16.Quantize(src, dst); break;
            case GgmlType.Q8_0: Q8_0.Quantize(src, dst); break;
            case GgmlType.Q4_0: Q4_0.Quantize(src, dst); break;
            case GgmlType.Q4_1: Q4_1.Quantize(src, dst); break;
            case GgmlType.Q5_0: Q5_0.Quantize(src, dst); break;
            case GgmlType.Q5_1: Q5_1.Quantize(src, dst); break;
            case GgmlType.Q2_K: Q2_K.Quantize(src, dst); break;
            case GgmlType.Q3_K: Q3_K.Quantize(src, dst); break;
            case GgmlType.Q4_K: Q4_K.Quantize(src, dst); break;
            case GgmlType.Q5_K: Q5_K.Quantize(src, dst); break;
            case GgmlType.Q6_K: Q6_K.Quantize(src, dst); break;
            default: throw new NotSupportedException($"cannot requantize to {GgmlTypeTraits.Name(type)}");
        }
    }
}
