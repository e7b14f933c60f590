using System.Buffers.Binary;

namespace Kiln.Training.Data;

/// <summary>
/// The trainer's token file: a 32-byte header, then the ids back to back, little-endian, uint16 when the vocabulary
/// fits (≤ 65536 ids, half the size and bandwidth) and uint32 otherwise.
/// Header: "KILNTOKS", uint32 version (1), uint32 bytes per token (2 or 4), uint32 vocabulary size, uint32 zero,
/// uint64 token count. The count makes a truncated file detectable.
/// </summary>
public static class TokenStreamFile
{
    public const int HeaderSize = 32;
    public const int Version = 1;
    public static ReadOnlySpan<byte> Magic => "KILNTOKS"u8;

    public static int BytesPerToken(int vocabSize) => vocabSize <= 65536 ? 2 : 4;

    public static void Write(string path, ReadOnlySpan<int> tokens, int vocabSize)
    {
        if (vocabSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocabulary size must be positive");
        int width = BytesPerToken(vocabSize);
        var header = new byte[HeaderSize];
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), (uint)width);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(16), (uint)vocabSize);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(24), (ulong)tokens.Length);
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        file.Write(header);
        var chunk = new byte[64 * 1024];
        int perChunk = chunk.Length / width;
        for (int start = 0; start < tokens.Length; start += perChunk)
        {
            var part = tokens.Slice(start, Math.Min(perChunk, tokens.Length - start));
            for (int i = 0; i < part.Length; i++)
            {
                int t = part[i];
                if ((uint)t >= (uint)vocabSize)
                    throw new ArgumentOutOfRangeException(nameof(tokens), t, $"token {start + i} is outside the vocabulary of {vocabSize}");
                if (width == 2)
                    BinaryPrimitives.WriteUInt16LittleEndian(chunk.AsSpan(2 * i), (ushort)t);
                else
                    BinaryPrimitives.WriteUInt32LittleEndian(chunk.AsSpan(4 * i), (uint)t);
            }
            file.Write(chunk, 0, part.Length * width);
        }
    }
}
