namespace Kiln.Formats.Llama2c;

/// <summary>What <see cref="Llama2cConverter.Convert(string, string, string)"/> wrote.</summary>
/// <param name="OutputPath">The GGUF file written.</param>
/// <param name="Config">The source checkpoint's hyperparameters.</param>
/// <param name="TensorCount">Tensors written (output.weight included, even when it duplicates the embedding).</param>
/// <param name="TensorBytes">Total bytes of tensor data written, before alignment padding.</param>
/// <param name="OutputBytes">Size of the GGUF file.</param>
public sealed record Llama2cConversionResult(string OutputPath, Llama2cConfig Config, int TensorCount, long TensorBytes, long OutputBytes)
{
    public override string ToString() =>
        $"{OutputPath}: {TensorCount} F32 tensors, {TensorBytes} bytes of weights, {OutputBytes} bytes in all ({Config})";
}
