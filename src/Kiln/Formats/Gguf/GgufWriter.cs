using System.Text;
using Kiln.Tensors;

namespace Kiln.Formats.Gguf;

/// <summary>
/// Builds a GGUF v3 (or v2) file in the layout llama.cpp and gguf-py write: header, metadata in insertion
/// order, tensor infos in insertion order, zero padding to the alignment, then each tensor's data padded to
/// the alignment. Everything is validated when added, so <see cref="Write(Stream)"/> only fails on I/O or a
/// faulty streaming callback.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>llama.cpp rejects tensor names of GGML_MAX_NAME (64) bytes or more (the C string needs its NUL).</summary>
    public const int MaxTensorNameBytes = 63;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly List<KeyValuePair<string, GgufValue>> _metadata = [];
    private readonly Dictionary<string, int> _metadataIndex = new(StringComparer.Ordinal);
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    public GgufWriter(uint version = 3)
    {
        if (version is not (2 or 3))
            throw new ArgumentOutOfRangeException(nameof(version), version, "GGUF writer supports versions 2 and 3");
        Version = version;
    }

    public uint Version { get; }

    /// <summary>general.alignment if set, else 32.</summary>
    public uint Alignment => _metadataIndex.TryGetValue(GgufFile.AlignmentKey, out int i)
        ? (uint)_metadata[i].Value.Value
        : GgufFile.DefaultAlignment;

    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata => _metadata.AsReadOnly();

    public int TensorCount => _tensors.Count;

    /// <summary>Adds a key, or replaces its value in place (keeping its position) if it exists.</summary>
    public void SetMetadata(string key, GgufValue value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        EncodeStrict(key, "metadata key");
        ValidateValue(key, value);
        if (key == GgufFile.AlignmentKey)
        {
            if (value.Type != GgufValueType.UInt32)
                throw new ArgumentException($"{GgufFile.AlignmentKey} must be uint32, not {value.TypeName}", nameof(value));
            uint a = (uint)value.Value;
            if (a == 0 || (a & (a - 1)) != 0)
                throw new ArgumentException($"{GgufFile.AlignmentKey} {a} is not a non-zero power of two", nameof(value));
        }

        if (_metadataIndex.TryGetValue(key, out int index))
        {
            _metadata[index] = new(key, value);
        }
        else
        {
            _metadataIndex.Add(key, _metadata.Count);
            _metadata.Add(new(key, value));
        }
    }

    /// <summary>Removes a key; later keys keep their relative order.</summary>
    public bool RemoveMetadata(string key)
    {
        if (!_metadataIndex.Remove(key, out int index))
            return false;
        _metadata.RemoveAt(index);
        for (int i = index; i < _metadata.Count; i++)
            _metadataIndex[_metadata[i].Key] = i;
        return true;
    }

    /// <summary>Adds a tensor whose bytes are in memory; <paramref name="data"/> must be exactly the tensor's byte size.</summary>
    public void AddTensor(string name, GgmlType type, long[] dimensions, ReadOnlyMemory<byte> data)
    {
        var t = Prepare(name, type, dimensions);
        if (data.Length != t.ByteSize)
            throw new ArgumentException(
                $"tensor '{name}': data is {data.Length} bytes, but [{string.Join(", ", dimensions)}] {GgmlTypeTraits.Name(type)} needs {t.ByteSize}",
                nameof(data));
        Commit(t with { Data = data });
    }

    /// <summary>
    /// Adds a tensor whose bytes are produced while writing (large or computed tensors): the callback must write
    /// exactly the tensor's byte size to the stream it is given.
    /// </summary>
    public void AddTensor(string name, GgmlType type, long[] dimensions, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        Commit(Prepare(name, type, dimensions) with { WriteData = writeData });
    }

    /// <summary>
    /// Writes to a temporary file beside <paramref name="path"/>, flushes it to disk, then renames it over
    /// <paramref name="path"/>: an interrupted or failed write never leaves a half-written file there.
    /// </summary>
    public void Write(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? throw new ArgumentException($"no folder in '{path}'", nameof(path));
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temp);
            }
            catch (IOException)
            {
                // Best effort: the original exception matters more than a leftover temp file.
            }
            throw;
        }
    }

    /// <summary>Writes the whole file sequentially (the stream need not seek).</summary>
    public void Write(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        uint alignment = Alignment;

        // Header, metadata and tensor infos are small next to tensor data; building them in memory first gives
        // their exact length, hence the padding before the data section, without needing a seekable output.
        var head = new MemoryStream();
        using (var w = new BinaryWriter(head, Encoding.UTF8, leaveOpen: true))
        {
            w.Write("GGUF"u8);
            w.Write(Version);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)_metadata.Count);
            foreach (var (key, value) in _metadata)
            {
                WriteString(w, key);
                w.Write((uint)value.Type);
                WriteValue(w, value);
            }

            ulong offset = 0;
            foreach (var t in _tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Dimensions.Length);
                foreach (long d in t.Dimensions)
                    w.Write((ulong)d);
                w.Write((uint)t.Type);
                w.Write(offset);
                offset += (ulong)AlignUp(t.ByteSize, alignment);
            }
        }
        head.Position = 0;
        head.CopyTo(stream);

        // gguf-py pads before the data section only when there is one: vocab-only files end right after the infos.
        if (_tensors.Count == 0)
            return;
        WritePadding(stream, head.Length, alignment);
        foreach (var t in _tensors)
        {
            if (t.WriteData is { } callback)
            {
                var sink = new TensorDataStream(stream, t.Name, t.ByteSize);
                callback(sink);
                sink.VerifyComplete();
            }
            else
            {
                stream.Write(t.Data.Span);
            }
            WritePadding(stream, t.ByteSize, alignment);
        }
    }

    private PendingTensor Prepare(string name, GgmlType type, long[] dimensions)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(dimensions);
        if (name.Length == 0)
            throw new ArgumentException("tensor name is empty", nameof(name));
        int nameBytes = EncodeStrict(name, "tensor name").Length;
        if (nameBytes > MaxTensorNameBytes)
            throw new ArgumentException($"tensor name '{name}' is {nameBytes} bytes; llama.cpp allows at most {MaxTensorNameBytes}", nameof(name));
        if (_tensorNames.Contains(name))
            throw new ArgumentException($"duplicate tensor name '{name}'", nameof(name));
        if (!GgmlTypeTraits.IsKnown((uint)type))
            throw new ArgumentOutOfRangeException(nameof(type), type, $"tensor '{name}': unknown ggml type id {(uint)type}");
        if (dimensions.Length is 0 or > GgufFile.MaxDimensions)
            throw new ArgumentException($"tensor '{name}': {dimensions.Length} dimensions, expected 1..{GgufFile.MaxDimensions}", nameof(dimensions));

        long elements = 1;
        for (int d = 0; d < dimensions.Length; d++)
        {
            if (dimensions[d] <= 0)
                throw new ArgumentException($"tensor '{name}': dimension {d} = {dimensions[d]} is not positive", nameof(dimensions));
            if (elements > long.MaxValue / dimensions[d])
                throw new ArgumentException($"tensor '{name}': element count overflows int64", nameof(dimensions));
            elements *= dimensions[d];
        }
        int blockSize = GgmlTypeTraits.BlockSize(type);
        if (dimensions[0] % blockSize != 0)
            throw new ArgumentException(
                $"tensor '{name}': row length {dimensions[0]} is not a multiple of the {GgmlTypeTraits.Name(type)} block size {blockSize}",
                nameof(dimensions));
        long blocks = dimensions[0] / blockSize;
        int blockBytes = GgmlTypeTraits.BlockBytes(type);
        long rows = elements / dimensions[0];
        if (blocks > long.MaxValue / blockBytes || rows > long.MaxValue / (blocks * blockBytes))
            throw new ArgumentException($"tensor '{name}': byte size overflows int64", nameof(dimensions));
        return new PendingTensor(name, type, (long[])dimensions.Clone(), blocks * blockBytes * rows, default, null);
    }

    private void Commit(PendingTensor t)
    {
        _tensorNames.Add(t.Name);
        _tensors.Add(t);
    }

    private static void ValidateValue(string key, GgufValue value)
    {
        switch (value.Value)
        {
            case string s:
                EncodeStrict(s, $"metadata '{key}' string");
                break;
            case GgufArray a:
                if (a.Depth > GgufCursor.MaxArrayDepth)
                    throw new ArgumentException($"metadata '{key}': arrays nested {a.Depth} deep; readers accept at most {GgufCursor.MaxArrayDepth}");
                ValidateStrings(key, a);
                break;
        }
    }

    private static void ValidateStrings(string key, GgufArray a)
    {
        if (a.Items is string[] strings)
            foreach (var s in strings)
                EncodeStrict(s, $"metadata '{key}' array item");
        else if (a.Items is GgufArray[] nested)
            foreach (var n in nested)
                ValidateStrings(key, n);
    }

    private static byte[] EncodeStrict(string s, string what)
    {
        try
        {
            return StrictUtf8.GetBytes(s);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException($"{what} is not valid Unicode (lone surrogate): {e.Message}", e);
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = StrictUtf8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue value)
    {
        switch (value.Value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case float v: w.Write(v); break;
            case bool v: w.Write((byte)(v ? 1 : 0)); break;
            case string v: WriteString(w, v); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case double v: w.Write(v); break;
            case GgufArray v: WriteArray(w, v); break;
            default: throw new InvalidOperationException($"unreachable: value of CLR type {value.Value.GetType()}");
        }
    }

    private static void WriteArray(BinaryWriter w, GgufArray array)
    {
        w.Write((uint)array.ElementType);
        w.Write((ulong)array.Count);
        // Dispatch on ElementType: runtime array type tests cannot tell short[] from ushort[] (CLR array variance).
        switch (array.ElementType)
        {
            case GgufValueType.UInt8: w.Write((byte[])array.Items); break;
            case GgufValueType.Int8: foreach (var v in (sbyte[])array.Items) w.Write(v); break;
            case GgufValueType.UInt16: foreach (var v in (ushort[])array.Items) w.Write(v); break;
            case GgufValueType.Int16: foreach (var v in (short[])array.Items) w.Write(v); break;
            case GgufValueType.UInt32: foreach (var v in (uint[])array.Items) w.Write(v); break;
            case GgufValueType.Int32: foreach (var v in (int[])array.Items) w.Write(v); break;
            case GgufValueType.Float32: foreach (var v in (float[])array.Items) w.Write(v); break;
            case GgufValueType.Bool: foreach (var v in (bool[])array.Items) w.Write((byte)(v ? 1 : 0)); break;
            case GgufValueType.String: foreach (var v in (string[])array.Items) WriteString(w, v); break;
            case GgufValueType.UInt64: foreach (var v in (ulong[])array.Items) w.Write(v); break;
            case GgufValueType.Int64: foreach (var v in (long[])array.Items) w.Write(v); break;
            case GgufValueType.Float64: foreach (var v in (double[])array.Items) w.Write(v); break;
            case GgufValueType.Array: foreach (var v in (GgufArray[])array.Items) WriteArray(w, v); break;
            default: throw new InvalidOperationException($"unreachable: array element type {array.ElementType}");
        }
    }

    private static void WritePadding(Stream stream, long position, uint alignment)
    {
        long pad = AlignUp(position, alignment) - position;
        Span<byte> zeros = stackalloc byte[256];
        zeros.Clear();
        while (pad > 0)
        {
            int n = (int)Math.Min(pad, zeros.Length);
            stream.Write(zeros[..n]);
            pad -= n;
        }
    }

    private static long AlignUp(long n, uint alignment) => (n + alignment - 1) / alignment * alignment;

    private sealed record PendingTensor(
        string Name, GgmlType Type, long[] Dimensions, long ByteSize, ReadOnlyMemory<byte> Data, Action<Stream>? WriteData);
}
