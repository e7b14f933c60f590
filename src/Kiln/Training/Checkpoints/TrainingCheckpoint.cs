using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Kiln.Training.Data;

namespace Kiln.Training.Checkpoints;

/// <summary>
/// Everything a run needs to continue bit-identically: model config, trainer options, step, the optimizer's update
/// count and moments, the weights, the RNG state and the data position. Layout (little-endian): "KILNCKPT", uint32
/// version, uint32 JSON length, JSON {config, options}, int64 step, int64 updates, 4 × uint64 RNG state, int64
/// epoch, int64 index, int64 parameter count, then weights, first and second moments as float32, then the SHA-256
/// of all preceding bytes. Written to a temporary file, flushed to disk, then renamed over the old one: a crash
/// leaves either the old checkpoint or the new one, and a torn or damaged file fails the checksum.
/// </summary>
public sealed class TrainingCheckpoint
{
    public const int Version = 1;
    private static ReadOnlySpan<byte> Magic => "KILNCKPT"u8;

    public required TrainingConfig Config { get; init; }
    public required TrainerOptions Options { get; init; }
    public required long Step { get; init; }
    public required long UpdateCount { get; init; }
    public required ulong[] RandomState { get; init; }
    public required LoaderPosition DataPosition { get; init; }
    public required float[] Weights { get; init; }
    public required float[] FirstMoment { get; init; }
    public required float[] SecondMoment { get; init; }

    private sealed record Header(TrainingConfig Config, TrainerOptions Options);

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    public void Write(string path)
    {
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
            byte[] json = JsonSerializer.SerializeToUtf8Bytes(new Header(Config, Options), Json);
            Span<byte> word = stackalloc byte[8];
            Put(Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(word, Version);
            Put(word[..4]);
            BinaryPrimitives.WriteUInt32LittleEndian(word, (uint)json.Length);
            Put(word[..4]);
            Put(json);
            foreach (long v in new[] { Step, UpdateCount })
            {
                BinaryPrimitives.WriteInt64LittleEndian(word, v);
                Put(word);
            }
            foreach (ulong v in RandomState)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(word, v);
                Put(word);
            }
            foreach (long v in new[] { DataPosition.Epoch, DataPosition.Index, Weights.Length })
            {
                BinaryPrimitives.WriteInt64LittleEndian(word, v);
                Put(word);
            }
            if (!BitConverter.IsLittleEndian)
                throw new PlatformNotSupportedException("checkpoints are written on little-endian machines only");
            Put(MemoryMarshal.AsBytes(Weights.AsSpan()));
            Put(MemoryMarshal.AsBytes(FirstMoment.AsSpan()));
            Put(MemoryMarshal.AsBytes(SecondMoment.AsSpan()));
            file.Write(hash.GetHashAndReset());
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, full, overwrite: true);
    }

    public static TrainingCheckpoint Read(string path)
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
            throw new InvalidDataException($"{path}: not a Kiln checkpoint (too short)");
        Get(word);
        if (!word.AsSpan().SequenceEqual(Magic))
            throw new InvalidDataException($"{path}: not a Kiln checkpoint");
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
        Header header;
        try
        {
            header = JsonSerializer.Deserialize<Header>(json, Json) ?? throw new InvalidDataException($"{path}: empty header");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: bad checkpoint header ({e.Message})");
        }
        return new TrainingCheckpoint
        {
            Config = header.Config,
            Options = header.Options,
            Step = step,
            UpdateCount = updates,
            RandomState = rng,
            DataPosition = new LoaderPosition(epoch, index),
            Weights = weights,
            FirstMoment = m,
            SecondMoment = v,
        };
    }
}
