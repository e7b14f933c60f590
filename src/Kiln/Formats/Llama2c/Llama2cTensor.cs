namespace Kiln.Formats.Llama2c;

/// <summary>
/// Where one float32 weight array lies in a llama2.c checkpoint. Shapes are row-major as llama2.c uses them:
/// a matrix is <see cref="Rows"/> × <see cref="Columns"/> with each row contiguous; a vector has <see cref="Rows"/> = 1.
/// </summary>
/// <param name="Weight">Which array this is.</param>
/// <param name="Layer">Layer index for per-layer weights; -1 for global ones.</param>
/// <param name="Rows">Number of rows (output features of a matrix; 1 for a vector).</param>
/// <param name="Columns">Row length (input features of a matrix; the length of a vector).</param>
/// <param name="Offset">Byte offset of the first element in the file.</param>
public sealed record Llama2cTensor(Llama2cWeight Weight, int Layer, int Rows, int Columns, long Offset)
{
    /// <summary>True for the RMSNorm gain vectors, which become 1-D tensors.</summary>
    public bool IsVector => Weight is Llama2cWeight.AttentionNorm or Llama2cWeight.FeedForwardNorm or Llama2cWeight.FinalNorm;

    public long ElementCount => (long)Rows * Columns;

    public long ByteLength => ElementCount * sizeof(float);
}
