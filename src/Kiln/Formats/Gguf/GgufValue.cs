using System.Globalization;
using System.Text;

namespace Kiln.Formats.Gguf;

/// <summary>
/// One immutable GGUF metadata value. <see cref="Value"/> holds the CLR value matching <see cref="Type"/>:
/// byte, sbyte, ushort, short, uint, int, float, bool, string, ulong, long, double, or <see cref="GgufArray"/>.
/// </summary>
public sealed class GgufValue
{
    private GgufValue(GgufValueType type, object value)
    {
        Type = type;
        Value = value;
    }

    public GgufValueType Type { get; }

    public object Value { get; }

    /// <summary>Type as GGUF tools print it: "uint32", "string", "array[string]" …</summary>
    public string TypeName => Type == GgufValueType.Array
        ? $"array[{((GgufArray)Value).ElementTypeName}]"
        : NameOf(Type);

    /// <summary>True for the eight integer types (not bool).</summary>
    public bool IsInteger => IsIntegerType(Type);

    /// <summary>True for integer and floating-point types (not bool).</summary>
    public bool IsNumeric => IsIntegerType(Type) || Type is GgufValueType.Float32 or GgufValueType.Float64;

    public static GgufValue FromUInt8(byte value) => new(GgufValueType.UInt8, value);
    public static GgufValue FromInt8(sbyte value) => new(GgufValueType.Int8, value);
    public static GgufValue FromUInt16(ushort value) => new(GgufValueType.UInt16, value);
    public static GgufValue FromInt16(short value) => new(GgufValueType.Int16, value);
    public static GgufValue FromUInt32(uint value) => new(GgufValueType.UInt32, value);
    public static GgufValue FromInt32(int value) => new(GgufValueType.Int32, value);
    public static GgufValue FromFloat32(float value) => new(GgufValueType.Float32, value);
    public static GgufValue FromBool(bool value) => new(GgufValueType.Bool, value);
    public static GgufValue FromUInt64(ulong value) => new(GgufValueType.UInt64, value);
    public static GgufValue FromInt64(long value) => new(GgufValueType.Int64, value);
    public static GgufValue FromFloat64(double value) => new(GgufValueType.Float64, value);

    public static GgufValue FromString(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return new(GgufValueType.String, value);
    }

    public static GgufValue FromArray(GgufArray value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return new(GgufValueType.Array, value);
    }

    public string AsString() => AsString("value", -1, null);

    /// <summary>Any integer type, widened to long; a uint64 above long.MaxValue is an error.</summary>
    public long AsInt64() => AsInt64("value", -1, null);

    /// <summary>Any numeric type (integers and floats), widened to double.</summary>
    public double AsDouble() => AsDouble("value", -1, null);

    public bool AsBool() => AsBool("value", -1, null);

    public GgufArray AsArray() => AsArray("value", -1, null);

    // The overloads below let GgufFile name the metadata key and its file offset in the error.
    internal string AsString(string field, long offset, string? file) =>
        Value as string ?? throw Mismatch("a string", field, offset, file);

    internal long AsInt64(string field, long offset, string? file) => Value switch
    {
        byte v => v,
        sbyte v => v,
        ushort v => v,
        short v => v,
        uint v => v,
        int v => v,
        long v => v,
        ulong v when v <= long.MaxValue => (long)v,
        ulong v => throw new GgufFormatException(field, offset, $"uint64 value {v} does not fit in a signed 64-bit integer", file),
        _ => throw Mismatch("an integer", field, offset, file),
    };

    internal double AsDouble(string field, long offset, string? file) => Value switch
    {
        float v => v,
        double v => v,
        ulong v => v,
        _ when IsInteger => AsInt64(field, offset, file),
        _ => throw Mismatch("a number", field, offset, file),
    };

    internal bool AsBool(string field, long offset, string? file) =>
        Value is bool b ? b : throw Mismatch("a bool", field, offset, file);

    internal GgufArray AsArray(string field, long offset, string? file) =>
        Value as GgufArray ?? throw Mismatch("an array", field, offset, file);

    private GgufFormatException Mismatch(string expected, string field, long offset, string? file) =>
        new(field, offset, $"expected {expected}, found {TypeName}", file);

    /// <summary>Short human form for listings: numbers invariant, strings quoted and clipped, arrays summarised.</summary>
    public override string ToString() => Value switch
    {
        string s => Quote(s, 80),
        GgufArray a => a.ToString(),
        _ => FormatScalar(Value),
    };

    internal static string FormatScalar(object value) => value switch
    {
        bool b => b ? "true" : "false",
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>Double-quoted, control characters escaped, clipped to <paramref name="maxChars"/> with an ellipsis.</summary>
    internal static string Quote(string s, int maxChars)
    {
        var sb = new StringBuilder(Math.Min(s.Length, maxChars) + 8);
        sb.Append('"');
        int i = 0;
        for (; i < s.Length && sb.Length <= maxChars; i++)
        {
            char c = s[i];
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (char.IsControl(c))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        sb.Append(c);
                    break;
            }
        }
        if (i < s.Length)
            sb.Append('…');
        sb.Append('"');
        return sb.ToString();
    }

    internal static bool IsIntegerType(GgufValueType type) => type is
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.UInt16 or GgufValueType.Int16
        or GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.UInt64 or GgufValueType.Int64;

    internal static bool IsValidType(uint id) => id <= (uint)GgufValueType.Float64;

    /// <summary>Bytes of one stored value of a fixed-size type; 0 for string and array.</summary>
    internal static int FixedSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 0,
    };

    internal static string NameOf(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => "uint8",
        GgufValueType.Int8 => "int8",
        GgufValueType.UInt16 => "uint16",
        GgufValueType.Int16 => "int16",
        GgufValueType.UInt32 => "uint32",
        GgufValueType.Int32 => "int32",
        GgufValueType.Float32 => "float32",
        GgufValueType.Bool => "bool",
        GgufValueType.String => "string",
        GgufValueType.Array => "array",
        GgufValueType.UInt64 => "uint64",
        GgufValueType.Int64 => "int64",
        GgufValueType.Float64 => "float64",
        _ => $"type {(uint)type}",
    };
}
