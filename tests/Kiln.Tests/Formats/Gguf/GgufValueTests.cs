using Kiln.Formats.Gguf;

namespace Kiln.Tests.Formats.Gguf;

public class GgufValueTests
{
    [Fact]
    public void IntegerAccessorWidensEveryIntegerType()
    {
        Assert.Equal(255L, GgufValue.FromUInt8(255).AsInt64());
        Assert.Equal(-128L, GgufValue.FromInt8(-128).AsInt64());
        Assert.Equal(65535L, GgufValue.FromUInt16(65535).AsInt64());
        Assert.Equal(-32768L, GgufValue.FromInt16(-32768).AsInt64());
        Assert.Equal(4294967295L, GgufValue.FromUInt32(uint.MaxValue).AsInt64());
        Assert.Equal(-2147483648L, GgufValue.FromInt32(int.MinValue).AsInt64());
        Assert.Equal(long.MaxValue, GgufValue.FromUInt64(long.MaxValue).AsInt64());
        Assert.Equal(long.MinValue, GgufValue.FromInt64(long.MinValue).AsInt64());
        var e = Assert.Throws<GgufFormatException>(() => GgufValue.FromUInt64(ulong.MaxValue).AsInt64());
        Assert.Contains("18446744073709551615", e.Message);
        Assert.Contains("found float32", Assert.Throws<GgufFormatException>(() => GgufValue.FromFloat32(1).AsInt64()).Message);
        Assert.Contains("found bool", Assert.Throws<GgufFormatException>(() => GgufValue.FromBool(true).AsInt64()).Message);
    }

    [Fact]
    public void DoubleAccessorTakesAnyNumber()
    {
        Assert.Equal(0.5, GgufValue.FromFloat32(0.5f).AsDouble());
        Assert.Equal(1e300, GgufValue.FromFloat64(1e300).AsDouble());
        Assert.Equal(-7.0, GgufValue.FromInt16(-7).AsDouble());
        Assert.Equal(18446744073709551615.0, GgufValue.FromUInt64(ulong.MaxValue).AsDouble());
        Assert.Contains("found string", Assert.Throws<GgufFormatException>(() => GgufValue.FromString("1").AsDouble()).Message);
    }

    [Fact]
    public void TypedAccessorsNameTheActualType()
    {
        Assert.Equal("x", GgufValue.FromString("x").AsString());
        Assert.True(GgufValue.FromBool(true).AsBool());
        Assert.Contains("expected a string, found uint32", Assert.Throws<GgufFormatException>(() => GgufValue.FromUInt32(1).AsString()).Message);
        Assert.Contains("expected a bool, found uint8", Assert.Throws<GgufFormatException>(() => GgufValue.FromUInt8(1).AsBool()).Message);
        Assert.Contains("expected an array, found string", Assert.Throws<GgufFormatException>(() => GgufValue.FromString("a").AsArray()).Message);
        Assert.Equal("array[string]", GgufValue.FromArray(GgufArray.Of("a")).TypeName);
    }

    [Fact]
    public void ArrayConversions()
    {
        Assert.Equal([1, -2, 3], GgufArray.Of(new short[] { 1, -2, 3 }).AsInt32s());
        // Signed and unsigned arrays of one width must stay distinct (the CLR lets short[] pass as ushort[]).
        Assert.Equal([-1L, 127L], GgufArray.Of(new sbyte[] { -1, 127 }).AsInt64s());
        Assert.Equal([255L], GgufArray.Of(new byte[] { 255 }).AsInt64s());
        Assert.Equal([65535L], GgufArray.Of(new ushort[] { 65535 }).AsInt64s());
        Assert.Equal([-1L], GgufArray.Of(new int[] { -1 }).AsInt64s());
        Assert.Equal([4294967295L], GgufArray.Of(new uint[] { uint.MaxValue }).AsInt64s());
        Assert.Equal([-1L], GgufArray.Of(new long[] { -1 }).AsInt64s());
        Assert.Equal(GgufValueType.Int16, GgufArray.Of(new short[] { -2 }).GetValue(0).Type);
        Assert.Equal((short)-2, GgufArray.Of(new short[] { -2 }).GetValue(0).Value);
        Assert.Equal(GgufValueType.UInt64, GgufArray.Of(new ulong[] { 5 }).GetValue(0).Type);
        Assert.Equal(GgufValueType.Int8, GgufArray.Of(new sbyte[] { 5 }).GetValue(0).Type);
        Assert.Equal([4000000000L], GgufArray.Of(new uint[] { 4000000000 }).AsInt64s());
        var e = Assert.Throws<GgufFormatException>(() => GgufArray.Of(new uint[] { 1, 4000000000 }).AsInt32s());
        Assert.Contains("array item 1", e.Message);
        Assert.Contains("found float32", Assert.Throws<GgufFormatException>(() => GgufArray.Of(1f).AsInt32s()).Message);
        Assert.Contains("found int32", Assert.Throws<GgufFormatException>(() => GgufArray.Of(1).AsFloat32s()).Message);
        Assert.Contains("found int32", Assert.Throws<GgufFormatException>(() => GgufArray.Of(1).AsStrings()).Message);
    }

    [Fact]
    public void ArraysCopyTheirInputAndOutput()
    {
        var source = new[] { "a", "b" };
        var array = GgufArray.Of(source);
        source[0] = "changed";
        string[] got = array.AsStrings();
        got[1] = "changed too";
        Assert.Equal(["a", "b"], array.AsStrings());
        Assert.Throws<ArgumentException>(() => GgufArray.Of("ok", null!));
        Assert.Throws<ArgumentNullException>(() => GgufValue.FromString(null!));
    }

    [Fact]
    public void ToStringIsShortAndInvariant()
    {
        Assert.Equal("1E-05", GgufValue.FromFloat32(1e-5f).ToString());
        Assert.Equal("0.1", GgufValue.FromFloat64(0.1).ToString());
        Assert.Equal("-3", GgufValue.FromInt8(-3).ToString());
        Assert.Equal("true", GgufValue.FromBool(true).ToString());
        Assert.Equal("\"a\\nb\\\"c\"", GgufValue.FromString("a\nb\"c").ToString());
        string longString = GgufValue.FromString(new string('x', 500)).ToString();
        Assert.True(longString.Length < 100, longString);
        Assert.EndsWith("…\"", longString);
        Assert.Equal("[string × 5: \"<unk>\", \"<s>\", \"</s>\", \"a\", …]",
            GgufValue.FromArray(GgufArray.Of("<unk>", "<s>", "</s>", "a", "b")).ToString());
        Assert.Equal("[float32 × 2: 0.5, -1]", GgufValue.FromArray(GgufArray.Of(0.5f, -1f)).ToString());
        Assert.Equal("[int32 × 0]", GgufValue.FromArray(GgufArray.Of(Array.Empty<int>())).ToString());
        Assert.Equal("[array × 2: [int32 × 1], [string × 0]]",
            GgufValue.FromArray(GgufArray.Of(GgufArray.Of(1), GgufArray.Of(Array.Empty<string>()))).ToString());
    }

    [Fact]
    public void FileAccessorsNameKeyOffsetAndType()
    {
        var w = new GgufWriter();
        w.SetMetadata("s", GgufValue.FromString("text"));
        w.SetMetadata("n", GgufValue.FromUInt16(7));
        w.SetMetadata("f", GgufValue.FromFloat64(2.5));
        w.SetMetadata("b", GgufValue.FromBool(false));
        w.SetMetadata("a", GgufValue.FromArray(GgufArray.Of(1, 2)));
        w.SetMetadata("big", GgufValue.FromUInt64(ulong.MaxValue));
        using var tmp = new TempFiles();
        string path = tmp.File("acc.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);

        Assert.Equal("text", f.GetString("s"));
        Assert.Equal(7L, f.GetInteger("n"));
        Assert.Equal(7f, f.GetFloat("n"));
        Assert.Equal(2.5f, f.GetFloat("f"));
        Assert.False(f.TryGetBool("b"));
        Assert.Equal([1, 2], f.GetArray("a").AsInt32s());
        Assert.Null(f.TryGetString("missing"));
        Assert.Null(f.TryGetInteger("missing"));
        Assert.Null(f.TryGetFloat("missing"));
        Assert.Null(f.TryGetBool("missing"));
        Assert.Null(f.TryGetArray("missing"));
        Assert.True(f.TryGetValue("n", out var v) && v.Type == GgufValueType.UInt16);
        Assert.False(f.TryGetValue("missing", out _));

        var missing = Assert.Throws<KeyNotFoundException>(() => f.GetInteger("missing"));
        Assert.Contains("'missing'", missing.Message);

        // "s" is the first kv: its value starts after the 24-byte header, the key (8 + 1 bytes) and the type (4).
        var wrong = Assert.Throws<GgufFormatException>(() => f.GetInteger("s"));
        Assert.Equal(24 + 9 + 4, wrong.ByteOffset);
        Assert.Contains("metadata 's'", wrong.Message);
        Assert.Contains("found string", wrong.Message);
        Assert.Throws<GgufFormatException>(() => f.TryGetString("n"));
        Assert.Throws<GgufFormatException>(() => f.TryGetBool("n"));
        Assert.Throws<GgufFormatException>(() => f.TryGetArray("n"));
        Assert.Throws<GgufFormatException>(() => f.GetFloat("s"));
        Assert.Contains("does not fit", Assert.Throws<GgufFormatException>(() => f.GetInteger("big")).Message);
    }

    [Fact]
    public void TensorAccessRequiresOwnInfoAndOpenFile()
    {
        var w = new GgufWriter();
        w.AddTensor("t", Kiln.Tensors.GgmlType.F32, [2], new byte[8]);
        using var tmp = new TempFiles();
        string p1 = tmp.File("1.gguf"), p2 = tmp.File("2.gguf");
        w.Write(p1);
        w.Write(p2);
        using var f1 = GgufFile.Open(p1);
        var f2 = GgufFile.Open(p2);
        var foreign = f2.GetTensor("t");
        Assert.Throws<ArgumentException>(() => f1.GetTensorBytes(foreign));
        f2.Dispose();
        f2.Dispose();   // idempotent
        Assert.Throws<ObjectDisposedException>(() => f2.GetTensorBytes(foreign));
        Assert.Equal(8, f1.GetTensorBytes(f1.GetTensor("t")).Length);
    }
}
