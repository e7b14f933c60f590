using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Kiln.Training.Data;

namespace Kiln.Training.Checkpoints;

/// <summary>
/// The container of Kiln's checkpoints, whatever trained them (<see cref="TrainingCheckpoint"/>, <see cref="LoraCheckpoint"/>):
/// 8-byte magic, uint32 version, uint32 JSON length, the JSON header, int64 step, int64 optimizer updates,
/// 4 × uint64 RNG state, int64 epoch, int64 index, int64 parameter count, then parameters, first and second moments
/// as float32, then the SHA-256 of all preceding bytes (little-endian throughout). Written to a temporary file,
/// flushed to disk, then renamed over the old one: a crash leaves either the old checkpoint or the new one, and a
/// torn or damaged file fails the checksum.
/// </summary>
internal static class CheckpointFile
{
    public const int Version = 1;

    /// <summary>What every checkpoint holds besides its header.</summary>
    public sealed record State(long Step, long UpdateCount, ulong[] RandomState, LoaderPosition DataPosition,
        float[] Weights, float[] FirstMoment, float[] SecondMoment);

    public static void Write(string path, ReadOnlySpan<byte> magic, byte[] json, State state)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("checkpoints are written on little-endian machines only");
        string full = Path.GetFullPath(path);
        string temp = full + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            void Put(ReadOnlySpan<byte> bytes)
            {
                file.Write(bytes);
                hash.AppendData(bytes);
            }
            Span<byte> word = stackalloc byte[8];
            Put(magic);
            BinaryPrimitives.WriteUInt32LittleEndian(word, Version);
            Put(word[..4]);
            BinaryPrimitives.WriteUInt32LittleEndian(word, (uint)json.Length);
            Put(word[..4]);
            Put(json);
            foreach (long v in new[] { state.Step, state.UpdateCount })
            {
                BinaryPrimitives.WriteInt64LittleEndian(word, v);
                Put(word);
            }
            foreach (ulong v in state.RandomState)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(word, v);
                Put(word);
            }
            foreach (long v in new[] { state.DataPosition.Epoch, state.DataPosition.Index, state.Weights.Length })
            {
                BinaryPrimitives.WriteInt64LittleEndian(word, v);
                Put(word);
            }
            Put(MemoryMarshal.AsBytes(state.Weights.AsSpan()));
            Put(MemoryMarshal.AsBytes(state.FirstMoment.AsSpan()));
            Put(MemoryMarshal.AsBytes(state.SecondMoment.AsSpan()));
            file.Write(hash.GetHashAndReset());
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, full, overwrite: true);
    }

    /// <summary>Reads and verifies a checkpoint; <paramref name="kind"/> names what was expected in errors ("not a {kind}").</summary>
    public static (byte[] Json, State State) Read(string path, ReadOnlySpan<byte> magic, string kind)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"checkpoint not found: {path}", path);
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long remaining = file.Length - 32;
        void Get(Span<byte> bytes)
        {
            if (bytes.Length > remaining)
                throw new InvalidDataException($"{path}: checkpoint is truncated");
            file.ReadExactly(bytes);
            hash.AppendData(bytes);
            remaining -= bytes.Length;
        }
        byte[] word = new byte[8];
        long Int64()
        {
            Get(word);
            return BinaryPrimitives.ReadInt64LittleEndian(word);
        }
        if (file.Length < 48)
            throw new InvalidDataException($"{path}: not a {kind} (too short)");
        Get(word);
        if (!word.AsSpan().SequenceEqual(magic))
            throw new InvalidDataException($"{path}: not a {kind}");
        Get(word);
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(word);
        int jsonLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(word.AsSpan(4));
        if (version != Version)
            throw new InvalidDataException($"{path}: checkpoint version {version} is not supported (expected {Version})");
        if (jsonLength <= 0 || jsonLength > remaining)
            throw new InvalidDataException($"{path}: checkpoint is truncated or damaged");
        byte[] json = new byte[jsonLength];
        Get(json);
        long step = Int64(), updates = Int64();
        ulong[] rng = new ulong[4];
        for (int i = 0; i < 4; i++)
            rng[i] = (ulong)Int64();
        long epoch = Int64(), index = Int64(), count = Int64();
        if (count < 0 || count * 12 != remaining)
            throw new InvalidDataException($"{path}: checkpoint is truncated or damaged ({count} parameters, {remaining} bytes left)");
        var weights = new float[count];
        var m = new float[count];
        var v = new float[count];
        Get(MemoryMarshal.AsBytes(weights.AsSpan()));
        Get(MemoryMarshal.AsBytes(m.AsSpan()));
        Get(MemoryMarshal.AsBytes(v.AsSpan()));
        byte[] stored = new byte[32];
        file.ReadExactly(stored);
        if (!stored.AsSpan().SequenceEqual(hash.GetHashAndReset()))
            throw new InvalidDataException($"{path}: checkpoint is corrupt (checksum mismatch)");
        return (json, new State(step, updates, rng, new LoaderPosition(epoch, index), weights, m, v));
    }
}
