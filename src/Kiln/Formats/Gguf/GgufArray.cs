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

    public string[] AsStrings() => Items is string[] s ? (string[])s.Clone() : throw Mismatch("string");

    public float[] AsFloat32s() => Items is float[] f ? (float[])f.Clone() : throw Mismatch("float32");

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
        return Items switch
        {
            byte[] a => GgufValue.FromUInt8(a[index]),
            sbyte[] a => GgufValue.FromInt8(a[index]),
            ushort[] a => GgufValue.FromUInt16(a[index]),
            short[] a => GgufValue.FromInt16(a[index]),
            uint[] a => GgufValue.FromUInt32(a[index]),
            int[] a => GgufValue.FromInt32(a[index]),
            float[] a => GgufValue.FromFloat32(a[index]),
            bool[] a => GgufValue.FromBool(a[index]),
            string[] a => GgufValue.FromString(a[index]),
            ulong[] a => GgufValue.FromUInt64(a[index]),
            long[] a => GgufValue.FromInt64(a[index]),
            double[] a => GgufValue.FromFloat64(a[index]),
            GgufArray[] a => GgufValue.FromArray(a[index]),
            _ => throw new InvalidOperationException("unreachable: unknown item array type"),
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

    private long IntegerAt(int i) => Items switch
    {
        byte[] a => a[i],
        sbyte[] a => a[i],
        ushort[] a => a[i],
        short[] a => a[i],
        uint[] a => a[i],
        int[] a => a[i],
        long[] a => a[i],
        ulong[] a when a[i] <= long.MaxValue => (long)a[i],
        ulong[] a => throw new GgufFormatException($"array item {i}", -1, $"uint64 value {a[i]} does not fit in int64"),
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
