using Kiln.Formats.Gguf;
using Kiln.Models;
using Kiln.Tensors;

namespace Kiln.Compute;

/// <summary>
/// A 2-D weight in its stored GGUF type, viewed in place in the memory-mapped file: Rows rows of
/// Columns elements (ggml's ne1 × ne0), each row RowBytes long. Nothing is copied.
/// </summary>
public sealed unsafe class WeightMatrix
{
    public WeightMatrix(string name, GgmlType type, int rows, int columns, byte* data)
    {
        Name = name;
        Type = type;
        Rows = rows;
        Columns = columns;
        RowBytes = checked((int)GgmlTypeTraits.RowBytes(type, columns));
        Data = data;
    }

    public string Name { get; }
    public GgmlType Type { get; }
    public int Rows { get; }
    public int Columns { get; }
    public int RowBytes { get; }
    public byte* Data { get; }

    public long ByteSize => (long)RowBytes * Rows;

    public ReadOnlySpan<byte> Row(int r) => new(Data + (long)r * RowBytes, RowBytes);

    /// <summary>Binds a GGUF tensor of shape [columns, rows] (ggml order), checking shape and type.</summary>
    public static WeightMatrix FromGguf(GgufFile file, string name, int columns, int rows)
    {
        var t = file.FindTensor(name) ?? throw new ModelFormatException($"{file.Path}: missing tensor {name}");
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != columns || t.Dimensions[1] != rows)
            throw new ModelFormatException(
                $"{file.Path}: tensor {name} has shape [{string.Join(", ", t.Dimensions)}], expected [{columns}, {rows}]");
        if (!RowKernels.Supports(t.Type))
            throw new ModelFormatException(
                $"{file.Path}: tensor {name} has type {GgmlTypeTraits.Name(t.Type)}, which Kiln cannot compute with yet");
        return new WeightMatrix(name, t.Type, rows, columns, file.GetTensorPointer(t));
    }
}
