using System.Collections.ObjectModel;
using System.IO.MemoryMappedFiles;
using Kiln.Tensors;

namespace Kiln.Formats.Gguf;

/// <summary>
/// A GGUF (v2/v3) file opened read-only, either memory-mapped or copied whole into huge-page memory
/// (<see cref="GgufLoadMode"/>). Metadata is parsed and materialised at open; <see cref="GetTensorPointer"/> and
/// <see cref="GetTensorBytes"/> point into the file's bytes (the map or the copy) and stay valid until
/// <see cref="Dispose"/>. Every structural field is validated against the file at open, so a file that opens can
/// be read without further bounds checks.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint DefaultAlignment = 32;
    public const string AlignmentKey = "general.alignment";

    /// <summary>GGML_MAX_DIMS.</summary>
    public const int MaxDimensions = 4;

    // Smallest encodings, used to reject absurd counts before looping: a kv is an 8-byte key length,
    // a 4-byte type and at least a 1-byte value; a tensor info is an 8-byte name length, 4-byte n_dims,
    // one 8-byte dimension, 4-byte type and 8-byte offset.
    private const int MinKvBytes = 8 + 4 + 1;
    private const int MinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

    /// <summary><see cref="GgufLoadMode.Auto"/> copies only files at least this large (smaller ones gain nothing measurable).</summary>
    public const long AutoCopyMinBytes = 64L << 20;

    // Reads into the copy go in pieces no larger than this (a span's length is an int).
    private const int CopyChunkBytes = 1 << 30;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly HugePageBuffer? _copy;
    private readonly HashSet<string> _rearranged = new(StringComparer.Ordinal);
    private byte* _base;
    private readonly Dictionary<string, GgufValue> _metadata;
    private readonly Dictionary<string, long> _metadataOffsets;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;

    private GgufFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, HugePageBuffer? copy, byte* @base, long length)
    {
        Path = path;
        _map = map;
        _view = view;
        _copy = copy;
        _base = @base;
        FileLength = length;
        LoadMode = copy is null ? GgufLoadMode.Map : GgufLoadMode.Copy;

        var cursor = new GgufCursor(@base, length, path);
        ReadHeader(cursor, out uint version, out ulong tensorCount, out ulong kvCount);
        Version = version;

        var list = new List<KeyValuePair<string, GgufValue>>((int)Math.Min(kvCount, 4096));
        _metadata = new Dictionary<string, GgufValue>(list.Capacity, StringComparer.Ordinal);
        _metadataOffsets = new Dictionary<string, long>(list.Capacity, StringComparer.Ordinal);
        Alignment = ReadMetadata(cursor, kvCount, list);
        MetadataList = list.AsReadOnly();
        Metadata = new ReadOnlyDictionary<string, GgufValue>(_metadata);

        _tensorsByName = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        var tensors = ReadTensorInfos(cursor, tensorCount, out long[] offsetFieldPositions);

        // The data section starts at the first alignment boundary after the tensor infos. A file with no
        // tensors may end before that boundary (gguf-py writes no trailing padding for vocab-only files).
        DataOffset = AlignUp(cursor.Position, Alignment);
        CheckTensorPlacement(cursor, tensors, offsetFieldPositions);
        Tensors = tensors.AsReadOnly();
    }

    public string Path { get; }

    public uint Version { get; }

    public long FileLength { get; }

    /// <summary>How the bytes were made addressable: <see cref="GgufLoadMode.Map"/> or <see cref="GgufLoadMode.Copy"/>, never Auto.</summary>
    public GgufLoadMode LoadMode { get; }

    /// <summary>Whether the copy was advised for transparent huge pages (Copy mode on Linux with THP available).</summary>
    public bool HugePagesAdvised => _copy?.HugePagesAdvised ?? false;

    public uint Alignment { get; }

    /// <summary>Absolute file offset of the data section.</summary>
    public long DataOffset { get; }

    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> MetadataList { get; }

    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }

    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Maps <paramref name="path"/> read-only and parses it; FileNotFoundException if absent, GgufFormatException if malformed.</summary>
    public static GgufFile Open(string path) => Open(path, GgufLoadMode.Map);

    /// <summary>
    /// Opens and parses <paramref name="path"/>, mapped or copied as <paramref name="mode"/> says (Auto: see
    /// <see cref="ChooseLoadMode"/>); FileNotFoundException if absent, GgufFormatException if malformed.
    /// </summary>
    public static GgufFile Open(string path, GgufLoadMode mode)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new FileNotFoundException($"GGUF file not found: {full}", full);
        if (mode == GgufLoadMode.Auto)
            mode = ChooseLoadMode(new FileInfo(full).Length);
        return mode == GgufLoadMode.Copy ? OpenCopied(full) : OpenMapped(full);
    }

    /// <summary>
    /// What <see cref="GgufLoadMode.Auto"/> resolves to for a file of <paramref name="fileLength"/> bytes: Copy on
    /// Linux (where the copy gets huge pages) when the file is at least <see cref="AutoCopyMinBytes"/> and fits in the
    /// available memory with a margin of an eighth plus 512 MiB, so that a copy never pushes the machine into
    /// reclaim; Map otherwise.
    /// </summary>
    public static GgufLoadMode ChooseLoadMode(long fileLength)
    {
        if (!OperatingSystem.IsLinux() || fileLength < AutoCopyMinBytes)
            return GgufLoadMode.Map;
        long? available = AvailableMemoryBytes();
        if (available is null || fileLength + fileLength / 8 + (512L << 20) > available)
            return GgufLoadMode.Map;
        return GgufLoadMode.Copy;
    }

    /// <summary>MemAvailable from /proc/meminfo (free plus reclaimable memory), or null when it cannot be read.</summary>
    private static long? AvailableMemoryBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length >= 2 && long.TryParse(parts[1], out long kib) ? kib * 1024 : null;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }

    private static GgufFile OpenMapped(string full)
    {
        var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            long length = stream.Length;
            if (length == 0)
                throw new GgufFormatException("magic", 0, "file is empty", full);
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            acquired = true;
            return new GgufFile(full, map, view, null, p + view.PointerOffset, length);
        }
        catch
        {
            if (acquired)
                view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            if (map is not null)
                map.Dispose();
            else
                stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads the file straight into the huge-page buffer (no managed copy on the way).</summary>
    private static GgufFile OpenCopied(string full)
    {
        HugePageBuffer? copy = null;
        try
        {
            using (var handle = File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan))
            {
                long length = RandomAccess.GetLength(handle);
                if (length == 0)
                    throw new GgufFormatException("magic", 0, "file is empty", full);
                copy = new HugePageBuffer(length);
                byte* p = copy.Pointer;
                for (long done = 0; done < length;)
                {
                    int n = RandomAccess.Read(handle, new Span<byte>(p + done, (int)Math.Min(CopyChunkBytes, length - done)), done);
                    if (n == 0)
                        throw new IOException($"{full}: file ended at byte {done} while reading {length} bytes (changed while loading?)");
                    done += n;
                }
            }
            return new GgufFile(full, null, null, copy, copy.Pointer, copy.Length);
        }
        catch
        {
            copy?.Dispose();
            throw;
        }
    }

    public GgufTensorInfo? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    public GgufTensorInfo GetTensor(string name) =>
        FindTensor(name) ?? throw new KeyNotFoundException($"tensor '{name}' not found in {Path}");

    /// <summary>Pointer to the tensor's first byte inside the map or copy; valid until Dispose.</summary>
    public byte* GetTensorPointer(GgufTensorInfo t)
    {
        byte* p = TensorStart(t);
        if (_rearranged.Contains(t.Name))
            throw new InvalidOperationException(
                $"tensor '{t.Name}' of {Path} was rearranged in memory for the compute kernels; read it through its WeightMatrix");
        return p;
    }

    /// <summary>
    /// Writable pointer to a tensor of a copied file, for a loader that rearranges the bytes in place (row
    /// interleaving for the kernels). From then on <see cref="GetTensorPointer"/> refuses the tensor, because its
    /// bytes are no longer the file's. Null for a mapped file, whose pages are read-only. <paramref name="first"/>
    /// is false when an earlier caller took the tensor already (a second model over the same file): its bytes are
    /// rearranged already and must not be rearranged again.
    /// </summary>
    internal byte* TakeTensorForRearranging(GgufTensorInfo t, out bool first)
    {
        byte* p = TensorStart(t);
        first = false;
        if (_copy is null)
            return null;
        first = _rearranged.Add(t.Name);
        return p;
    }

    private byte* TensorStart(GgufTensorInfo t)
    {
        ArgumentNullException.ThrowIfNull(t);
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_tensorsByName.TryGetValue(t.Name, out var own) || !ReferenceEquals(own, t))
            throw new ArgumentException($"tensor info '{t.Name}' does not belong to {Path}", nameof(t));
        return _base + DataOffset + (long)t.Offset;
    }

    /// <summary>The tensor's bytes inside the map or copy (no further copy); valid until Dispose.</summary>
    public ReadOnlySpan<byte> GetTensorBytes(GgufTensorInfo t)
    {
        byte* p = GetTensorPointer(t);
        if (t.ByteSize > int.MaxValue)
            throw new InvalidOperationException(
                $"tensor '{t.Name}' is {t.ByteSize} bytes, too large for a span; use GetTensorPointer");
        return new ReadOnlySpan<byte>(p, (int)t.ByteSize);
    }

    public bool TryGetValue(string key, out GgufValue value) => _metadata.TryGetValue(key, out value!);

    public string GetString(string key) => Require(key).AsString(Field(key), OffsetOf(key), Path);

    public string? TryGetString(string key) =>
        _metadata.TryGetValue(key, out var v) ? v.AsString(Field(key), OffsetOf(key), Path) : null;

    /// <summary>Any integer type, widened to long.</summary>
    public long GetInteger(string key) => Require(key).AsInt64(Field(key), OffsetOf(key), Path);

    public long? TryGetInteger(string key) =>
        _metadata.TryGetValue(key, out var v) ? v.AsInt64(Field(key), OffsetOf(key), Path) : null;

    /// <summary>Any numeric type, converted to float.</summary>
    public float GetFloat(string key) => (float)Require(key).AsDouble(Field(key), OffsetOf(key), Path);

    public float? TryGetFloat(string key) =>
        _metadata.TryGetValue(key, out var v) ? (float)v.AsDouble(Field(key), OffsetOf(key), Path) : null;

    public bool GetBool(string key) => Require(key).AsBool(Field(key), OffsetOf(key), Path);

    public bool? TryGetBool(string key) =>
        _metadata.TryGetValue(key, out var v) ? v.AsBool(Field(key), OffsetOf(key), Path) : null;

    public GgufArray GetArray(string key) => Require(key).AsArray(Field(key), OffsetOf(key), Path);

    public GgufArray? TryGetArray(string key) =>
        _metadata.TryGetValue(key, out var v) ? v.AsArray(Field(key), OffsetOf(key), Path) : null;

    public void Dispose()
    {
        if (_base == null)
            return;
        _base = null;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        _copy?.Dispose();
    }

    private GgufValue Require(string key) =>
        _metadata.TryGetValue(key, out var v) ? v : throw new KeyNotFoundException($"metadata key '{key}' not found in {Path}");

    private static string Field(string key) => $"metadata '{key}'";

    private long OffsetOf(string key) => _metadataOffsets.GetValueOrDefault(key, -1);

    private static void ReadHeader(GgufCursor c, out uint version, out ulong tensorCount, out ulong kvCount)
    {
        if (c.Length < 4)
            throw c.Error("magic", 0, $"file is {c.Length} bytes, too short to be GGUF");
        var magic = c.ReadBytes(4, "magic");
        if (!magic.SequenceEqual("GGUF"u8))
        {
            string legacy = magic.SequenceEqual("lmgg"u8) || magic.SequenceEqual("fmgg"u8) || magic.SequenceEqual("tjgg"u8)
                ? " (this is a legacy GGML/GGMF/GGJT file; convert it to GGUF with llama.cpp)"
                : "";
            throw c.Error("magic", 0, $"expected 'GGUF' (47 47 55 46), found {Convert.ToHexString(magic)}{legacy}");
        }

        version = c.ReadUInt32("version");
        if (version is not (2 or 3))
        {
            string why = version switch
            {
                1 => "GGUF v1 (32-bit counts) is no longer supported; re-convert the model with a current llama.cpp",
                _ when System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(version) is 2 or 3 =>
                    "this looks like a big-endian GGUF file; only little-endian files are supported",
                _ => $"unsupported version {version}; Kiln reads GGUF versions 2 and 3",
            };
            throw c.Error("version", 4, why);
        }

        tensorCount = c.ReadUInt64("tensor_count");
        kvCount = c.ReadUInt64("metadata_kv_count");
        if (kvCount > (ulong)(c.Remaining / MinKvBytes))
            throw c.Error("metadata_kv_count", 16, $"{kvCount} key/value pairs cannot fit in the {c.Remaining} bytes after the header");
        if (tensorCount > (ulong)(c.Remaining / MinTensorInfoBytes))
            throw c.Error("tensor_count", 8, $"{tensorCount} tensor infos cannot fit in the {c.Remaining} bytes after the header");
    }

    private uint ReadMetadata(GgufCursor c, ulong kvCount, List<KeyValuePair<string, GgufValue>> list)
    {
        uint alignment = DefaultAlignment;
        for (ulong i = 0; i < kvCount; i++)
        {
            long keyAt = c.Position;
            string key = c.ReadString($"metadata #{i} key");
            if (_metadata.ContainsKey(key))
                throw c.Error($"metadata #{i} key '{key}'", keyAt, "duplicate metadata key");
            string field = $"metadata #{i} '{key}'";
            var type = c.ReadValueType(field + " type");
            long valueAt = c.Position;
            var value = c.ReadValue(type, field);

            if (key == AlignmentKey)
            {
                if (type != GgufValueType.UInt32)
                    throw c.Error(field, valueAt, $"alignment must be uint32, found {value.TypeName}");
                alignment = (uint)value.Value;
                if (alignment == 0 || (alignment & (alignment - 1)) != 0)
                    throw c.Error(field, valueAt, $"alignment {alignment} is not a non-zero power of two");
            }

            list.Add(new(key, value));
            _metadata.Add(key, value);
            _metadataOffsets.Add(key, valueAt);
        }
        return alignment;
    }

    private GgufTensorInfo[] ReadTensorInfos(GgufCursor c, ulong tensorCount, out long[] offsetFieldPositions)
    {
        if (tensorCount > (ulong)(c.Remaining / MinTensorInfoBytes))
            throw c.Error("tensor_count", 8, $"{tensorCount} tensor infos cannot fit in the {c.Remaining} bytes left after the metadata");
        var tensors = new GgufTensorInfo[tensorCount];
        offsetFieldPositions = new long[tensorCount];
        for (int i = 0; i < tensors.Length; i++)
        {
            long nameAt = c.Position;
            string name = c.ReadString($"tensor info #{i} name");
            if (_tensorsByName.ContainsKey(name))
                throw c.Error($"tensor info #{i} name '{name}'", nameAt, "duplicate tensor name");
            string field = $"tensor info #{i} '{name}'";

            long nDimsAt = c.Position;
            uint nDims = c.ReadUInt32(field + " n_dims");
            if (nDims is 0 or > MaxDimensions)
                throw c.Error(field + " n_dims", nDimsAt, $"n_dims {nDims} is not in 1..{MaxDimensions}");

            var dims = new long[nDims];
            long elements = 1;
            for (int d = 0; d < dims.Length; d++)
            {
                long dimAt = c.Position;
                ulong ne = c.ReadUInt64($"{field} dimension {d}");
                if (ne == 0 || ne > long.MaxValue)
                    throw c.Error($"{field} dimension {d}", dimAt, ne == 0 ? "0 is not positive" : $"{ne} does not fit in int64");
                dims[d] = (long)ne;
                if (elements > long.MaxValue / dims[d])
                    throw c.Error($"{field} dimension {d}", dimAt, $"element count [{string.Join(", ", dims[..(d + 1)])}] overflows int64");
                elements *= dims[d];
            }

            long typeAt = c.Position;
            uint typeId = c.ReadUInt32(field + " type");
            if (!GgmlTypeTraits.IsKnown(typeId))
                throw c.Error(field + " type", typeAt, $"unknown ggml type id {typeId}");
            var type = (GgmlType)typeId;
            int blockSize = GgmlTypeTraits.BlockSize(type);
            if (dims[0] % blockSize != 0)
                throw c.Error(field + " dimension 0", typeAt,
                    $"row length {dims[0]} is not a multiple of the {GgmlTypeTraits.Name(type)} block size {blockSize}");
            // Element count fitting in int64 does not make the byte size fit (F64 is 8 bytes per element),
            // so bound both factors by division before multiplying.
            long blocks = dims[0] / blockSize;
            int blockBytes = GgmlTypeTraits.BlockBytes(type);
            long rows = elements / dims[0];
            if (blocks > long.MaxValue / blockBytes || rows > long.MaxValue / (blocks * blockBytes))
                throw c.Error(field, typeAt, $"byte size of [{string.Join(", ", dims)}] {GgmlTypeTraits.Name(type)} overflows int64");
            long byteSize = blocks * blockBytes * rows;

            long offsetAt = c.Position;
            ulong offset = c.ReadUInt64(field + " offset");
            if (offset % Alignment != 0)
                throw c.Error(field + " offset", offsetAt, $"data offset {offset} is not a multiple of the alignment {Alignment}");

            var info = new GgufTensorInfo(name, type, dims, offset, elements, byteSize);
            tensors[i] = info;
            offsetFieldPositions[i] = offsetAt;
            _tensorsByName.Add(name, info);
        }
        return tensors;
    }

    private void CheckTensorPlacement(GgufCursor c, GgufTensorInfo[] tensors, long[] offsetFieldPositions)
    {
        if (tensors.Length == 0)
            return;
        if (DataOffset > FileLength)
            throw c.Error("data section", DataOffset,
                $"the data section would start at byte {DataOffset}, past the end of the {FileLength}-byte file, yet {tensors.Length} tensors are declared");
        long dataBytes = FileLength - DataOffset;
        for (int i = 0; i < tensors.Length; i++)
        {
            var t = tensors[i];
            if (t.Offset > (ulong)dataBytes || t.ByteSize > dataBytes - (long)t.Offset)
                throw c.Error($"tensor info #{i} '{t.Name}' offset", offsetFieldPositions[i],
                    $"data [{t.Offset}, +{t.ByteSize}) extends past the end of the data section ({dataBytes} bytes from byte {DataOffset}; file truncated?)");
        }

        // Overlap check in offset order; ties and out-of-order layouts are legal as long as ranges are disjoint.
        var order = new int[tensors.Length];
        for (int i = 0; i < order.Length; i++)
            order[i] = i;
        Array.Sort(order, (a, b) => tensors[a].Offset.CompareTo(tensors[b].Offset));
        for (int k = 1; k < order.Length; k++)
        {
            var prev = tensors[order[k - 1]];
            var cur = tensors[order[k]];
            if (cur.Offset < prev.Offset + (ulong)prev.ByteSize)
                throw c.Error($"tensor info #{order[k]} '{cur.Name}' offset", offsetFieldPositions[order[k]],
                    $"data at {cur.Offset} overlaps tensor '{prev.Name}' [{prev.Offset}, {prev.Offset + (ulong)prev.ByteSize})");
        }
    }

    private static long AlignUp(long position, uint alignment) => (position + alignment - 1) / alignment * alignment;
}
