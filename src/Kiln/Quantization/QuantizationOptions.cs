namespace Kiln.Quantization;

/// <summary>Settings of one <see cref="GgufQuantizer"/> run.</summary>
public sealed record QuantizationOptions
{
    public QuantizationMix Mix { get; init; } = QuantizationMix.Q4_K_M;

    /// <summary>Worker threads (the calling thread included); at least 1.</summary>
    public int Threads { get; init; } = 1;

    /// <summary>llama-quantize --leave-output: output.weight keeps its source type.</summary>
    public bool LeaveOutput { get; init; }

    /// <summary>llama-quantize --pure: every quantizable tensor gets the mix's default type (no per-tensor rules).</summary>
    public bool Pure { get; init; }

    /// <summary>llama-quantize --imatrix: per-column weights for the rounding error of the tensors it covers.</summary>
    public ImportanceMatrix? Importance { get; init; }

    /// <summary>
    /// GPTQ for the tensors whose target type <see cref="GptqQuantizer"/> writes and that have a Hessian; the
    /// others are rounded to nearest (with <see cref="Importance"/> when given).
    /// </summary>
    public GptqOptions? Gptq { get; init; }

    /// <summary>Tensors already quantized (by <see cref="LayerwiseGptq"/>), in their planned type, written as they are.</summary>
    public IReadOnlyDictionary<string, byte[]>? Precomputed { get; init; }

    /// <summary>Called after each tensor has been written, in file order.</summary>
    public Action<TensorProgress>? TensorWritten { get; init; }
}
