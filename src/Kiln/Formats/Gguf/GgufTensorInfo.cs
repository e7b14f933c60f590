using Kiln.Tensors;

namespace Kiln.Formats.Gguf;

/// <summary>
/// One tensor's entry in a GGUF file: name, type, shape (ggml order: Dimensions[0] is the row length,
/// the innermost, contiguous dimension) and where its bytes sit relative to the data section.
/// </summary>
public sealed class GgufTensorInfo
{
    internal GgufTensorInfo(string name, GgmlType type, long[] dimensions, ulong offset, long elementCount, long byteSize)
    {
        Name = name;
        Type = type;
        Dimensions = dimensions;
        Offset = offset;
        ElementCount = elementCount;
        ByteSize = byteSize;
    }

    public string Name { get; }

    public GgmlType Type { get; }

    /// <summary>ggml order: [0] = row length. Treat as read-only.</summary>
    public long[] Dimensions { get; }

    /// <summary>Offset of the first byte relative to the start of the data section.</summary>
    public ulong Offset { get; }

    public long ElementCount { get; }

    /// <summary>Bytes of tensor data (rows × GgmlTypeTraits.RowBytes(type, row length)), padding excluded.</summary>
    public long ByteSize { get; }

    public long RowLength => Dimensions[0];

    public long Rows => ElementCount / Dimensions[0];

    public override string ToString() =>
        $"{Name} {GgmlTypeTraits.Name(Type)} [{string.Join(", ", Dimensions)}] @{Offset} ({ByteSize} bytes)";
}
