using System.Text;

namespace Kiln.Formats.Gguf;

/// <summary>
/// A GGUF metadata array: one element type, materialised as a typed CLR array in <see cref="Items"/>
/// (byte[], sbyte[], ushort[], short[], uint[], int[], float[], bool[], string[], ulong[], long[], double[],
/// or GgufArray[] for nested arrays). Treat <see cref="Items"/> as read-only: it is shared, not copied;
/// the As* methods return fresh copies.
/// </summary>
public sealed class GgufArray
{
    internal GgufArray(GgufValueType elementType, Array items)
    {
        ElementType = elementType;
        Items = items;
    }

    public GgufValueType ElementType { get; }

    public int Count => Items.Length;

    public Array Items { get; }

    /// <summary>"string", "float32", … or "array" for nested arrays.</summary>
    public string ElementTypeName => GgufValue.NameOf(ElementType);

    /// <summary>Levels of array nesting: 1 for an array of scalars or strings.</summary>
    public int Depth
    {
        get
        {
            if (Items is not GgufArray[] nested)
                return 1;
            int max = 0;
            foreach (var a in nested)
                max = Math.Max(max, a.Depth);
            return max + 1;
        }
    }

    public string[] AsStrings() =>
        ElementType == GgufValueType.String ? (string[])Items.Clone() : throw Mismatch("string");

    public float[] AsFloat32s() =>
        ElementType == GgufValueType.Float32 ? (float[])Items.Clone() : throw Mismatch("float32");

    /// <summary>Any integer element type, each value checked to fit in an int.</summary>
    public int[] AsInt32s()
    {
        RequireIntegerElements("int32");
        var result = new int[Count];
        for (int i = 0; i < result.Length; i++)
        {
            long v = IntegerAt(i);
            if (v is < int.MinValue or > int.MaxValue)
                throw new GgufFormatException($"array item {i}", -1, $"{ElementTypeName} value {v} does not fit in int32");
            result[i] = (int)v;
        }
        return result;
    }

    /// <summary>Any integer element type, each value checked to fit in a long.</summary>
    public long[] AsInt64s()
    {
        RequireIntegerElements("int64");
        var result = new long[Count];
        for (int i = 0; i < result.Length; i++)
            result[i] = IntegerAt(i);
        return result;
    }

    /// <summary>Element <paramref name="index"/> wrapped as a value.</summary>
    public GgufValue GetValue(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        // Dispatch on ElementType, not on the runtime array type: the CLR treats short[] as ushort[]
        // (and sbyte[]/byte[], int[]/uint[], long[]/ulong[]) in type tests, so `Items is ushort[]` is
        // also true for an int16 array.
        return ElementType switch
        {
            GgufValueType.UInt8 => GgufValue.FromUInt8(((byte[])Items)[index]),
            GgufValueType.Int8 => GgufValue.FromInt8(((sbyte[])Items)[index]),
            GgufValueType.UInt16 => GgufValue.FromUInt16(((ushort[])Items)[index]),
            GgufValueType.Int16 => GgufValue.FromInt16(((short[])Items)[index]),
            GgufValueType.UInt32 => GgufValue.FromUInt32(((uint[])Items)[index]),
            GgufValueType.Int32 => GgufValue.FromInt32(((int[])Items)[index]),
            GgufValueType.Float32 => GgufValue.FromFloat32(((float[])Items)[index]),
            GgufValueType.Bool => GgufValue.FromBool(((bool[])Items)[index]),
            GgufValueType.String => GgufValue.FromString(((string[])Items)[index]),
            GgufValueType.UInt64 => GgufValue.FromUInt64(((ulong[])Items)[index]),
            GgufValueType.Int64 => GgufValue.FromInt64(((long[])Items)[index]),
            GgufValueType.Float64 => GgufValue.FromFloat64(((double[])Items)[index]),
            GgufValueType.Array => GgufValue.FromArray(((GgufArray[])Items)[index]),
            _ => throw new InvalidOperationException($"unreachable: element type {ElementType}"),
        };
    }

    public static GgufArray Of(params byte[] items) => new(GgufValueType.UInt8, Copy(items));
    public static GgufArray Of(params sbyte[] items) => new(GgufValueType.Int8, Copy(items));
    public static GgufArray Of(params ushort[] items) => new(GgufValueType.UInt16, Copy(items));
    public static GgufArray Of(params short[] items) => new(GgufValueType.Int16, Copy(items));
    public static GgufArray Of(params uint[] items) => new(GgufValueType.UInt32, Copy(items));
    public static GgufArray Of(params int[] items) => new(GgufValueType.Int32, Copy(items));
    public static GgufArray Of(params float[] items) => new(GgufValueType.Float32, Copy(items));
    public static GgufArray Of(params bool[] items) => new(GgufValueType.Bool, Copy(items));
    public static GgufArray Of(params ulong[] items) => new(GgufValueType.UInt64, Copy(items));
    public static GgufArray Of(params long[] items) => new(GgufValueType.Int64, Copy(items));
    public static GgufArray Of(params double[] items) => new(GgufValueType.Float64, Copy(items));

    public static GgufArray Of(params string[] items)
    {
        var copy = Copy(items);
        for (int i = 0; i < copy.Length; i++)
            if (copy[i] is null)
                throw new ArgumentException($"string array item {i} is null", nameof(items));
        return new(GgufValueType.String, copy);
    }

    /// <summary>An array of arrays (GGUF allows nesting; each inner array has its own element type).</summary>
    public static GgufArray Of(params GgufArray[] items)
    {
        var copy = Copy(items);
        for (int i = 0; i < copy.Length; i++)
            if (copy[i] is null)
                throw new ArgumentException($"nested array item {i} is null", nameof(items));
        return new(GgufValueType.Array, copy);
    }

    /// <summary>"[string × 32000: "&lt;unk&gt;", "&lt;s&gt;", …]": type, count and the first few items.</summary>
    public override string ToString()
    {
        int show = ElementType == GgufValueType.String ? 4 : 8;
        var sb = new StringBuilder();
        sb.Append('[').Append(ElementTypeName).Append(" × ").Append(Count);
        if (Count > 0)
        {
            sb.Append(": ");
            for (int i = 0; i < Math.Min(show, Count); i++)
            {
                if (i > 0)
                    sb.Append(", ");
                sb.Append(Items switch
                {
                    string[] s => GgufValue.Quote(s[i], 24),
                    GgufArray[] a => $"[{a[i].ElementTypeName} × {a[i].Count}]",
                    _ => GgufValue.FormatScalar(Items.GetValue(i)!),
                });
            }
            if (Count > show)
                sb.Append(", …");
        }
        sb.Append(']');
        return sb.ToString();
    }

    private void RequireIntegerElements(string wanted)
    {
        if (!GgufValue.IsIntegerType(ElementType))
            throw Mismatch(wanted);
    }

    // ElementType dispatch for the same reason as GetValue.
    private long IntegerAt(int i) => ElementType switch
    {
        GgufValueType.UInt8 => ((byte[])Items)[i],
        GgufValueType.Int8 => ((sbyte[])Items)[i],
        GgufValueType.UInt16 => ((ushort[])Items)[i],
        GgufValueType.Int16 => ((short[])Items)[i],
        GgufValueType.UInt32 => ((uint[])Items)[i],
        GgufValueType.Int32 => ((int[])Items)[i],
        GgufValueType.Int64 => ((long[])Items)[i],
        GgufValueType.UInt64 when ((ulong[])Items)[i] is var u && u <= long.MaxValue => (long)u,
        GgufValueType.UInt64 => throw new GgufFormatException($"array item {i}", -1, $"uint64 value {((ulong[])Items)[i]} does not fit in int64"),
        _ => throw Mismatch("integer"),
    };

    private GgufFormatException Mismatch(string wanted) =>
        new("array", -1, $"expected {wanted} elements, found {ElementTypeName}");

    private static T[] Copy<T>(T[] items)
    {
        ArgumentNullException.ThrowIfNull(items);
        return (T[])items.Clone();
    }
}
