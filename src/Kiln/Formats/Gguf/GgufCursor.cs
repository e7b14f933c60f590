using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;

namespace Kiln.Formats.Gguf;

/// <summary>
/// Bounds-checked little-endian reads over a mapped GGUF file. Every length and count is compared with the
/// bytes that remain before anything is allocated, so a hostile header cannot make the reader allocate or
/// read past the end; every failure is one <see cref="GgufFormatException"/> naming the field and offset.
/// </summary>
internal sealed unsafe class GgufCursor
{
    /// <summary>Deepest array nesting accepted; keeps hostile files from overflowing the stack.</summary>
    public const int MaxArrayDepth = 8;

    private readonly byte* _base;

    public GgufCursor(byte* @base, long length, string source)
    {
        _base = @base;
        Length = length;
        Source = source;
    }

    public long Length { get; }

    public string Source { get; }

    public long Position { get; private set; }

    public long Remaining => Length - Position;

    public GgufFormatException Error(string field, long offset, string problem) => new(field, offset, problem, Source);

    public byte ReadUInt8(string field) => *Take(1, field);

    public ushort ReadUInt16(string field) => BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(Take(2, field), 2));

    public uint ReadUInt32(string field) => BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(Take(4, field), 4));

    public ulong ReadUInt64(string field) => BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(Take(8, field), 8));

    /// <summary>Raw bytes at the current position, no copy.</summary>
    public ReadOnlySpan<byte> ReadBytes(int count, string field) => new(Take(count, field), count);

    /// <summary>uint64 length + UTF-8 bytes. <paramref name="index"/> &gt;= 0 appends "[index]" to the field, built only on error.</summary>
    public string ReadString(string field, int index = -1)
    {
        long at = Position;
        if (Remaining < 8)
            throw Truncated(Indexed(field, index) + " length", 8);
        ulong length = ReadUInt64(field);
        if (length > (ulong)Remaining)
            throw Error(Indexed(field, index), at, $"string length {length} exceeds the {Remaining} bytes left in the file");
        if (length > int.MaxValue)
            throw Error(Indexed(field, index), at, $"string length {length} is larger than 2 GiB");
        var bytes = new ReadOnlySpan<byte>(_base + Position, (int)length);
        if (!Utf8.IsValid(bytes))
            throw Error(Indexed(field, index), at, $"string of {length} bytes is not valid UTF-8");
        Position += (long)length;
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>A uint32 value type id, checked to be one GGUF defines.</summary>
    public GgufValueType ReadValueType(string field)
    {
        long at = Position;
        uint id = ReadUInt32(field);
        if (!GgufValue.IsValidType(id))
            throw Error(field, at, $"invalid value type id {id} (valid ids are 0..12)");
        return (GgufValueType)id;
    }

    /// <summary>A value of <paramref name="type"/>; arrays recurse with <paramref name="depth"/> counting nesting.</summary>
    public GgufValue ReadValue(GgufValueType type, string field, int depth = 0)
    {
        long at = Position;
        return type switch
        {
            GgufValueType.UInt8 => GgufValue.FromUInt8(ReadUInt8(field)),
            GgufValueType.Int8 => GgufValue.FromInt8((sbyte)ReadUInt8(field)),
            GgufValueType.UInt16 => GgufValue.FromUInt16(ReadUInt16(field)),
            GgufValueType.Int16 => GgufValue.FromInt16((short)ReadUInt16(field)),
            GgufValueType.UInt32 => GgufValue.FromUInt32(ReadUInt32(field)),
            GgufValueType.Int32 => GgufValue.FromInt32((int)ReadUInt32(field)),
            GgufValueType.Float32 => GgufValue.FromFloat32(BitConverter.UInt32BitsToSingle(ReadUInt32(field))),
            GgufValueType.Bool => GgufValue.FromBool(ToBool(ReadUInt8(field), field, at)),
            GgufValueType.String => GgufValue.FromString(ReadString(field)),
            GgufValueType.UInt64 => GgufValue.FromUInt64(ReadUInt64(field)),
            GgufValueType.Int64 => GgufValue.FromInt64((long)ReadUInt64(field)),
            GgufValueType.Float64 => GgufValue.FromFloat64(BitConverter.UInt64BitsToDouble(ReadUInt64(field))),
            GgufValueType.Array => GgufValue.FromArray(ReadArray(field, depth + 1)),
            _ => throw Error(field, at, $"invalid value type id {(uint)type}"),
        };
    }

    private GgufArray ReadArray(string field, int depth)
    {
        long at = Position;
        if (depth > MaxArrayDepth)
            throw Error(field, at, $"arrays nested more than {MaxArrayDepth} deep");
        var elementType = ReadValueType(field + " element type");
        long countAt = Position;
        ulong count = ReadUInt64(field + " count");

        // Smallest possible encoding of one element: a fixed-size scalar, an 8-byte string length,
        // or a nested array's 4-byte type + 8-byte count. A count the remaining bytes cannot hold is
        // rejected here, before any allocation.
        int minElementBytes = elementType switch
        {
            GgufValueType.String => 8,
            GgufValueType.Array => 12,
            _ => GgufValue.FixedSize(elementType),
        };
        if (count > (ulong)(Remaining / minElementBytes))
            throw Error(field + " count", countAt,
                $"{GgufValue.NameOf(elementType)} array count {count} needs at least {minElementBytes} bytes per element, but only {Remaining} bytes are left");
        if (count > (ulong)Array.MaxLength)
            throw Error(field + " count", countAt, $"array count {count} is larger than .NET arrays allow");
        int n = (int)count;
        if ((long)minElementBytes * n > int.MaxValue && elementType is not (GgufValueType.String or GgufValueType.Array))
            throw Error(field + " count", countAt, $"{GgufValue.NameOf(elementType)} array of {count} elements is larger than 2 GiB");

        switch (elementType)
        {
            case GgufValueType.String:
            {
                var items = new string[n];
                for (int i = 0; i < n; i++)
                    items[i] = ReadString(field, i);
                return new GgufArray(elementType, items);
            }
            case GgufValueType.Array:
            {
                var items = new GgufArray[n];
                for (int i = 0; i < n; i++)
                    items[i] = ReadArray($"{field}[{i}]", depth + 1);
                return new GgufArray(elementType, items);
            }
            case GgufValueType.Bool:
            {
                long start = Position;
                var raw = ReadBytes(n, field);
                var items = new bool[n];
                for (int i = 0; i < n; i++)
                    items[i] = ToBool(raw[i], Indexed(field, i), start + i);
                return new GgufArray(elementType, items);
            }
            default:
                return new GgufArray(elementType, ReadScalarBlock(elementType, n, field));
        }
    }

    private Array ReadScalarBlock(GgufValueType type, int n, string field)
    {
        int size = GgufValue.FixedSize(type);
        var raw = ReadBytes(n * size, field);   // n * size <= int.MaxValue, checked by the caller
        switch (type)
        {
            case GgufValueType.UInt8: return raw.ToArray();
            case GgufValueType.Int8:
            {
                var a = new sbyte[n];
                raw.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
                return a;
            }
            case GgufValueType.UInt16:
            {
                var a = new ushort[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadUInt16LittleEndian(raw[(i * 2)..]);
                return a;
            }
            case GgufValueType.Int16:
            {
                var a = new short[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadInt16LittleEndian(raw[(i * 2)..]);
                return a;
            }
            case GgufValueType.UInt32:
            {
                var a = new uint[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw[(i * 4)..]);
                return a;
            }
            case GgufValueType.Int32:
            {
                var a = new int[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadInt32LittleEndian(raw[(i * 4)..]);
                return a;
            }
            case GgufValueType.Float32:
            {
                var a = new float[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadSingleLittleEndian(raw[(i * 4)..]);
                return a;
            }
            case GgufValueType.UInt64:
            {
                var a = new ulong[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw[(i * 8)..]);
                return a;
            }
            case GgufValueType.Int64:
            {
                var a = new long[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadInt64LittleEndian(raw[(i * 8)..]);
                return a;
            }
            case GgufValueType.Float64:
            {
                var a = new double[n];
                for (int i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadDoubleLittleEndian(raw[(i * 8)..]);
                return a;
            }
            default:
                throw new InvalidOperationException($"unreachable: {type} is not a fixed-size scalar");
        }
    }

    private bool ToBool(byte b, string field, long at) => b switch
    {
        0 => false,
        1 => true,
        _ => throw Error(field, at, $"bool byte is {b}, must be 0 or 1"),
    };

    private byte* Take(long count, string field)
    {
        if (count > Remaining)
            throw Truncated(field, count);
        byte* p = _base + Position;
        Position += count;
        return p;
    }

    private GgufFormatException Truncated(string field, long needed) =>
        Error(field, Position, $"needs {needed} bytes but the file ends after {Remaining} (truncated file?)");

    private static string Indexed(string field, int index) => index < 0 ? field : $"{field}[{index}]";
}
