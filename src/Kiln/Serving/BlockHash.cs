using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Kiln.Serving;

/// <summary>
/// SHA-256 identity of a full KV block: the hash of (parent block's hash, the block's token ids). Chaining makes a
/// block's hash stand for the whole prefix up to its end, so equal hashes mean equal prefixes (not merely equal
/// blocks) and a cached block can be reused by any sequence that starts with the same tokens.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct BlockHash(ulong A, ulong B, ulong C, ulong D)
{
    /// <summary>The parent of a sequence's first block.</summary>
    public static BlockHash Root => default;

    /// <summary>Hash of the block holding <paramref name="tokens"/> that follows the block hashed <paramref name="parent"/>.</summary>
    public static BlockHash Chain(BlockHash parent, ReadOnlySpan<int> tokens)
    {
        int bytes = 32 + 4 * tokens.Length;
        Span<byte> input = bytes <= 512 ? stackalloc byte[bytes] : new byte[bytes];
        BinaryPrimitives.WriteUInt64LittleEndian(input, parent.A);
        BinaryPrimitives.WriteUInt64LittleEndian(input[8..], parent.B);
        BinaryPrimitives.WriteUInt64LittleEndian(input[16..], parent.C);
        BinaryPrimitives.WriteUInt64LittleEndian(input[24..], parent.D);
        for (int i = 0; i < tokens.Length; i++)
            BinaryPrimitives.WriteInt32LittleEndian(input[(32 + 4 * i)..], tokens[i]);
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(input, digest);
        return new BlockHash(
            BinaryPrimitives.ReadUInt64LittleEndian(digest),
            BinaryPrimitives.ReadUInt64LittleEndian(digest[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(digest[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(digest[24..]));
    }
}
