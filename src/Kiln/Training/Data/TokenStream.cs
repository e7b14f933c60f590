using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace Kiln.Training.Data;

/// <summary>A token file (<see cref="TokenStreamFile"/>) mapped into memory: the OS pages it in as batches are read.</summary>
public sealed unsafe class TokenStream : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data;
    private readonly int _width;

    private TokenStream(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, int width, int vocab, long count)
    {
        Path = path;
        (_map, _view, _width, VocabSize, Count) = (map, view, width, vocab, count);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _data = p + view.PointerOffset + TokenStreamFile.HeaderSize;
    }

    public string Path { get; }
    public long Count { get; }
    public int VocabSize { get; }

    public static TokenStream Open(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"token file not found: {path}", path);
        long length = new FileInfo(path).Length;
        var header = new byte[TokenStreamFile.HeaderSize];
        using (var f = File.OpenRead(path))
        {
            if (length < header.Length || f.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length
                || !header.AsSpan(0, 8).SequenceEqual(TokenStreamFile.Magic))
                throw new InvalidDataException($"{path} is not a Kiln token file (make one with 'kiln data prepare')");
        }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8));
        int width = (int)BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12));
        uint vocab = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(16));
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(24));
        if (version != TokenStreamFile.Version)
            throw new InvalidDataException($"{path}: token file version {version} is not supported (expected {TokenStreamFile.Version})");
        if ((width != 2 && width != 4) || vocab == 0 || vocab > int.MaxValue || width != TokenStreamFile.BytesPerToken((int)vocab))
            throw new InvalidDataException($"{path}: bad header ({width} bytes per token, vocabulary {vocab})");
        if (count > (ulong)(length - TokenStreamFile.HeaderSize) / (ulong)width || (long)count * width + TokenStreamFile.HeaderSize != length)
            throw new InvalidDataException($"{path}: header says {count} tokens but the file holds {(length - TokenStreamFile.HeaderSize) / width} (truncated or padded)");
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        return new TokenStream(path, map, view, width, (int)vocab, (long)count);
    }

    public int this[long index]
    {
        get
        {
            if ((ulong)index >= (ulong)Count)
                throw new ArgumentOutOfRangeException(nameof(index));
            return _width == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(_data + 2 * index, 2))
                : (int)BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_data + 4 * index, 4));
        }
    }

    /// <summary>Copies tokens [start, start + destination.Length).</summary>
    public void Read(long start, Span<int> destination)
    {
        if (start < 0 || start + destination.Length > Count)
            throw new ArgumentOutOfRangeException(nameof(start), $"tokens {start}..{start + destination.Length} outside 0..{Count}");
        if (_width == 2)
        {
            var src = new ReadOnlySpan<byte>(_data + 2 * start, 2 * destination.Length);
            for (int i = 0; i < destination.Length; i++)
                destination[i] = BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(2 * i));
        }
        else
        {
            var src = new ReadOnlySpan<byte>(_data + 4 * start, 4 * destination.Length);
            for (int i = 0; i < destination.Length; i++)
                destination[i] = (int)BinaryPrimitives.ReadUInt32LittleEndian(src.Slice(4 * i));
        }
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
