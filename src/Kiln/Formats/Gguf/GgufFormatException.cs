namespace Kiln.Formats.Gguf;

/// <summary>
/// A GGUF file (or a metadata value) is malformed or not of the expected shape. The message names the field
/// and, where the problem is in a file, the byte offset at which the offending item starts.
/// </summary>
public sealed class GgufFormatException : Exception
{
    public GgufFormatException(string field, long byteOffset, string problem, string? file = null)
        : base(Compose(field, byteOffset, problem, file))
    {
        Field = field;
        ByteOffset = byteOffset;
        FilePath = file;
    }

    /// <summary>What was being read: e.g. "tensor info #3 'blk.0.attn_q.weight' dimension 1".</summary>
    public string Field { get; }

    /// <summary>Absolute file offset of the offending item; -1 when the problem is not tied to a file position.</summary>
    public long ByteOffset { get; }

    /// <summary>The file being read, when known.</summary>
    public string? FilePath { get; }

    private static string Compose(string field, long byteOffset, string problem, string? file)
    {
        string where = byteOffset >= 0 ? $" at byte {byteOffset}" : "";
        string inFile = file is null ? "" : $" (in {file})";
        return $"GGUF: {field}{where}: {problem}{inFile}";
    }
}
