namespace Kiln.Quantization;

/// <summary>The outcome of a <see cref="GgufQuantizer"/> run.</summary>
public sealed record QuantizationSummary(
    IReadOnlyList<TensorQuantization> Tensors, long SourceFileBytes, long OutputFileBytes, TimeSpan Elapsed)
{
    public long Elements => Tensors.Sum(t => t.Elements);

    public long SourceTensorBytes => Tensors.Sum(t => t.SourceBytes);

    public long OutputTensorBytes => Tensors.Sum(t => t.TargetBytes);

    /// <summary>Bits per weight over all tensors, as llama.cpp's model size line counts it.</summary>
    public double SourceBitsPerWeight => SourceTensorBytes * 8.0 / Elements;

    public double OutputBitsPerWeight => OutputTensorBytes * 8.0 / Elements;

    /// <summary>Tensors whose planned type did not fit their row length.</summary>
    public IReadOnlyList<TensorQuantization> Fallbacks => Tensors.Where(t => t.FallbackFrom is not null).ToList();
}
