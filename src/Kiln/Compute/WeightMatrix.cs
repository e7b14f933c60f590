using Kiln.Formats.Gguf;
using Kiln.Models;
using Kiln.Tensors;

namespace Kiln.Compute;

/// <summary>
/// A 2-D weight in its stored GGUF type, viewed in place in the file's bytes (mapped or copied): Rows rows of
/// Columns elements (ggml's ne1 × ne0), each row RowBytes long. Nothing is copied. A Q4_0 matrix of a copied
/// file may be interleaved in place for the decode kernels (<see cref="Layout"/>); then its grouped rows are read
/// through <see cref="CopyRow"/> or <see cref="DequantizeRow"/>, not <see cref="Row"/>.
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
    public WeightLayout Layout { get; private set; }

    /// <summary>Rows that sit in interleaved groups (a multiple of eight); 0 in the plain layout.</summary>
    public int InterleavedRows => Layout == WeightLayout.Q4_0Interleaved8 ? Rows / Q4_0x8.Rows * Q4_0x8.Rows : 0;

    public long ByteSize => (long)RowBytes * Rows;

    /// <summary>Row <paramref name="r"/> in place; InvalidOperationException for a row inside an interleaved group.</summary>
    public ReadOnlySpan<byte> Row(int r)
    {
        if (r < InterleavedRows)
            throw new InvalidOperationException($"row {r} of {Name} is interleaved with its neighbours; use CopyRow or DequantizeRow");
        return new(Data + (long)r * RowBytes, RowBytes);
    }

    /// <summary>Row <paramref name="r"/> in ggml's plain layout, whatever the matrix's layout.</summary>
    public void CopyRow(int r, Span<byte> dst)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(r);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(r, Rows);
        if (r < InterleavedRows)
        {
            int g = r / Q4_0x8.Rows * Q4_0x8.Rows;
            Q4_0x8.ExtractRow(new ReadOnlySpan<byte>(Data + (long)g * RowBytes, Q4_0x8.Rows * RowBytes), RowBytes, r - g, dst);
            return;
        }
        Row(r).CopyTo(dst);
    }

    /// <summary>Row <paramref name="r"/> as floats, whatever the matrix's layout.</summary>
    public void DequantizeRow(int r, Span<float> dst)
    {
        if (r < InterleavedRows)
        {
            Span<byte> row = RowBytes <= 8192 ? stackalloc byte[RowBytes] : new byte[RowBytes];
            CopyRow(r, row);
            RowKernels.Dequantize(Type, row, dst);
            return;
        }
        RowKernels.Dequantize(Type, Row(r), dst);
    }

    /// <summary>Binds a GGUF tensor of shape [columns, rows] (ggml order), checking shape and type.</summary>
    public static WeightMatrix FromGguf(GgufFile file, string name, int columns, int rows) =>
        FromGguf(file, name, columns, rows, interleave: false);

    /// <summary>
    /// Binds a GGUF tensor as <see cref="FromGguf(GgufFile, string, int, int)"/>; with <paramref name="interleave"/>,
    /// a Q4_0 matrix of a copied file with at least eight rows is rearranged in place into
    /// <see cref="WeightLayout.Q4_0Interleaved8"/> (the file then refuses plain access to that tensor). Only
    /// matrices read solely through <see cref="MatMul"/> and the row accessors above should ask for it.
    /// </summary>
    public static WeightMatrix FromGguf(GgufFile file, string name, int columns, int rows, bool interleave)
    {
        var t = file.FindTensor(name) ?? throw new ModelFormatException($"{file.Path}: missing tensor {name}");
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != columns || t.Dimensions[1] != rows)
            throw new ModelFormatException(
                $"{file.Path}: tensor {name} has shape [{string.Join(", ", t.Dimensions)}], expected [{columns}, {rows}]");
        if (!RowKernels.Supports(t.Type))
            throw new ModelFormatException(
                $"{file.Path}: tensor {name} has type {GgmlTypeTraits.Name(t.Type)}, which Kiln cannot compute with yet");
        // Only the AVX2 kernels read the interleaved layout fast; elsewhere the plain rows serve better.
        if (interleave && t.Type == GgmlType.Q4_0 && rows >= Q4_0x8.Rows && file.LoadMode == GgufLoadMode.Copy && CpuPaths.CanAvx2)
        {
            byte* p = file.TakeTensorForRearranging(t, out bool first);
            var m = new WeightMatrix(name, t.Type, rows, columns, p);
            if (first)
                m.InterleaveInPlace();
            m.Layout = WeightLayout.Q4_0Interleaved8;
            return m;
        }
        return new WeightMatrix(name, t.Type, rows, columns, file.GetTensorPointer(t));
    }

    private void InterleaveInPlace()
    {
        int groupBytes = Q4_0x8.Rows * RowBytes;
        var plain = new byte[groupBytes];
        for (long g = 0; g + Q4_0x8.Rows <= Rows; g += Q4_0x8.Rows)
        {
            var group = new Span<byte>(Data + g * RowBytes, groupBytes);
            group.CopyTo(plain);
            Q4_0x8.Interleave(plain, RowBytes, group);
        }
    }
}
