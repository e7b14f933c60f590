using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.Formats.Gguf;

public class GgufRoundTripTests
{
    private static List<KeyValuePair<string, GgufValue>> EveryValueType() =>
    [
        new("t.u8", GgufValue.FromUInt8(255)),
        new("t.i8", GgufValue.FromInt8(-128)),
        new("t.u16", GgufValue.FromUInt16(65535)),
        new("t.i16", GgufValue.FromInt16(-32768)),
        new("t.u32", GgufValue.FromUInt32(uint.MaxValue)),
        new("t.i32", GgufValue.FromInt32(int.MinValue)),
        new("t.f32", GgufValue.FromFloat32(-1.5e-7f)),
        new("t.f32.nan", GgufValue.FromFloat32(BitConverter.Int32BitsToSingle(0x7fc00123))),
        new("t.f32.negzero", GgufValue.FromFloat32(-0.0f)),
        new("t.bool.true", GgufValue.FromBool(true)),
        new("t.bool.false", GgufValue.FromBool(false)),
        new("t.str", GgufValue.FromString("héllo ✓ 🦙 \n\t\"quoted\"")),
        new("t.str.empty", GgufValue.FromString("")),
        new("t.u64", GgufValue.FromUInt64(ulong.MaxValue)),
        new("t.i64", GgufValue.FromInt64(long.MinValue)),
        new("t.f64", GgufValue.FromFloat64(Math.PI)),
        new("a.u8", GgufValue.FromArray(GgufArray.Of(new byte[] { 0, 1, 254, 255 }))),
        new("a.i8", GgufValue.FromArray(GgufArray.Of(new sbyte[] { -128, 0, 127 }))),
        new("a.u16", GgufValue.FromArray(GgufArray.Of(new ushort[] { 1, 65535 }))),
        new("a.i16", GgufValue.FromArray(GgufArray.Of(new short[] { -32768, 32767 }))),
        new("a.u32", GgufValue.FromArray(GgufArray.Of(new uint[] { 0, 0xdeadbeef }))),
        new("a.i32", GgufValue.FromArray(GgufArray.Of(new int[] { -1, 2, int.MaxValue }))),
        new("a.f32", GgufValue.FromArray(GgufArray.Of(new float[] { 0.25f, float.NegativeInfinity, float.Epsilon }))),
        new("a.bool", GgufValue.FromArray(GgufArray.Of(new bool[] { true, false, true }))),
        new("a.str", GgufValue.FromArray(GgufArray.Of(new string[] { "<unk>", "", "▁the", "日本語", "\u0000" }))),
        new("a.u64", GgufValue.FromArray(GgufArray.Of(new ulong[] { ulong.MaxValue, 7 }))),
        new("a.i64", GgufValue.FromArray(GgufArray.Of(new long[] { long.MinValue, long.MaxValue }))),
        new("a.f64", GgufValue.FromArray(GgufArray.Of(new double[] { -0.0, 1e300 }))),
        new("a.empty", GgufValue.FromArray(GgufArray.Of(Array.Empty<float>()))),
        new("a.nested", GgufValue.FromArray(GgufArray.Of(
            GgufArray.Of(new int[] { 1, 2, 3 }),
            GgufArray.Of(new string[] { "x", "yz" }),
            GgufArray.Of(GgufArray.Of(new double[] { 2.5 }), GgufArray.Of(Array.Empty<bool>())),
            GgufArray.Of(Array.Empty<GgufArray>())))),
    ];

    [Theory]
    [InlineData(2u)]
    [InlineData(3u)]
    public void EveryValueTypeRoundTrips(uint version)
    {
        using var tmp = new TempFiles();
        var writer = new GgufWriter(version);
        var expected = EveryValueType();
        foreach (var (k, v) in expected)
            writer.SetMetadata(k, v);
        string path = tmp.File("values.gguf");
        writer.Write(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(version, f.Version);
        Assert.Empty(f.Tensors);
        Assert.Equal(expected.Select(kv => kv.Key), f.MetadataList.Select(kv => kv.Key));
        for (int i = 0; i < expected.Count; i++)
            GgufAssert.SameValue(expected[i].Value, f.MetadataList[i].Value, expected[i].Key);
        Assert.Equal(expected.Count, f.Metadata.Count);
        // Typed item arrays, checked directly rather than through GgufArray's own accessors.
        Assert.Equal(new sbyte[] { -128, 0, 127 }, (sbyte[])f.GetArray("a.i8").Items);
        Assert.Equal(new short[] { -32768, 32767 }, (short[])f.GetArray("a.i16").Items);
        Assert.Equal(new int[] { -1, 2, int.MaxValue }, (int[])f.GetArray("a.i32").Items);
        Assert.Equal(new long[] { long.MinValue, long.MaxValue }, (long[])f.GetArray("a.i64").Items);
        Assert.Equal(new ulong[] { ulong.MaxValue, 7 }, (ulong[])f.GetArray("a.u64").Items);
        Assert.Equal(new[] { "<unk>", "", "▁the", "日本語", "\u0000" }, (string[])f.GetArray("a.str").Items);
        GgufAssert.SameValue(expected[0].Value, f.Metadata["t.u8"], "t.u8");
    }

    [Fact]
    public void WriterOutputEqualsHandAssembledBytes()
    {
        // Layout computed by hand from the GGUF spec: header 24 bytes, kvs, infos, pad to 32, data padded to 32.
        byte[] weights = new byte[2 * 3 * 4];
        new Random(7).NextBytes(weights);
        byte[] norm = [1, 2, 3, 4, 5, 6, 7, 8];
        var expected = new RawGgufBuilder()
            .Header(3, tensorCount: 2, kvCount: 2)
            .KvString("general.architecture", "llama")
            .Str("llama.block_count").U32(4).U32(5)
            .TensorInfo("w", (uint)GgmlType.F32, 0, 2, 3)
            .TensorInfo("n", (uint)GgmlType.F16, 32, 4)   // 24 bytes of w, padded to 32
            .PadTo(32)
            .Bytes(weights).PadTo(32)
            .Bytes(norm).PadTo(32)
            .ToArray();

        var writer = new GgufWriter();
        writer.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        writer.SetMetadata("llama.block_count", GgufValue.FromUInt32(5));
        writer.AddTensor("w", GgmlType.F32, [2, 3], weights);
        writer.AddTensor("n", GgmlType.F16, [4], norm);
        var ms = new MemoryStream();
        writer.Write(ms);

        Assert.Equal(expected, ms.ToArray());
    }

    [Fact]
    public void TensorsOfSeveralTypesRoundTripByteForByte()
    {
        var rng = new Random(1234);
        (string Name, GgmlType Type, long[] Dims)[] specs =
        [
            ("f32", GgmlType.F32, [64, 3]),
            ("f16", GgmlType.F16, [33, 5]),        // odd size: forces padding after it
            ("q8_0", GgmlType.Q8_0, [64, 4]),
            ("q4_0", GgmlType.Q4_0, [96, 2, 3]),
            ("q4_k", GgmlType.Q4_K, [256, 2]),
            ("bf16.4d", GgmlType.BF16, [2, 3, 4, 5]),
        ];
        var data = new Dictionary<string, byte[]>();
        var writer = new GgufWriter();
        writer.SetMetadata("general.architecture", GgufValue.FromString("test"));
        foreach (var (name, type, dims) in specs)
        {
            long rows = dims.Aggregate(1L, (a, b) => a * b) / dims[0];
            // Byte sizes from ggml's block table, independent of the code under test.
            long rowBytes = type switch
            {
                GgmlType.F32 => dims[0] * 4,
                GgmlType.F16 or GgmlType.BF16 => dims[0] * 2,
                GgmlType.Q8_0 => dims[0] / 32 * 34,
                GgmlType.Q4_0 => dims[0] / 32 * 18,
                GgmlType.Q4_K => dims[0] / 256 * 144,
                _ => throw new InvalidOperationException(),
            };
            var bytes = new byte[rowBytes * rows];
            rng.NextBytes(bytes);
            data[name] = bytes;
            writer.AddTensor(name, type, dims, bytes);
        }

        using var tmp = new TempFiles();
        string path = tmp.File("tensors.gguf");
        writer.Write(path);
        using var f = GgufFile.Open(path);

        Assert.Equal(specs.Select(s => s.Name), f.Tensors.Select(t => t.Name));
        Assert.Equal(0, f.DataOffset % 32);
        Assert.Equal(0, f.FileLength % 32);
        ulong expectedOffset = 0;
        foreach (var (name, type, dims) in specs)
        {
            var t = f.GetTensor(name);
            Assert.Equal(type, t.Type);
            Assert.Equal(dims, t.Dimensions);
            Assert.Equal(expectedOffset, t.Offset);
            Assert.Equal(data[name].Length, t.ByteSize);
            Assert.True(f.GetTensorBytes(t).SequenceEqual(data[name]), name);
            expectedOffset += (ulong)((data[name].Length + 31) / 32 * 32);
        }
        Assert.Equal(f.DataOffset + (long)expectedOffset, f.FileLength);
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(8u)]
    [InlineData(64u)]
    [InlineData(4096u)]
    public void CustomAlignmentIsHonoured(uint alignment)
    {
        var writer = new GgufWriter();
        writer.SetMetadata("general.alignment", GgufValue.FromUInt32(alignment));
        byte[] a = new byte[5 * 4];
        byte[] b = new byte[3 * 4];
        new Random(3).NextBytes(a);
        new Random(4).NextBytes(b);
        writer.AddTensor("a", GgmlType.F32, [5], a);
        writer.AddTensor("b", GgmlType.F32, [3], b);

        using var tmp = new TempFiles();
        string path = tmp.File("aligned.gguf");
        writer.Write(path);
        using var f = GgufFile.Open(path);

        Assert.Equal(alignment, f.Alignment);
        Assert.Equal(0, f.DataOffset % alignment);
        Assert.Equal((ulong)((20 + alignment - 1) / alignment * alignment), f.GetTensor("b").Offset);
        Assert.True(f.GetTensorBytes(f.GetTensor("a")).SequenceEqual(a));
        Assert.True(f.GetTensorBytes(f.GetTensor("b")).SequenceEqual(b));
        unsafe
        {
            byte* pa = f.GetTensorPointer(f.GetTensor("a"));
            byte* pb = f.GetTensorPointer(f.GetTensor("b"));
            Assert.Equal(0L, (pb - pa) % alignment);
        }
    }

    [Fact]
    public void StreamingTensorCallbackWritesData()
    {
        var expected = new float[300];
        for (int i = 0; i < expected.Length; i++)
            expected[i] = i * 0.5f - 7;
        var writer = new GgufWriter();
        writer.AddTensor("streamed", GgmlType.F32, [100, 3], s =>
        {
            // Write in uneven chunks, as a converter streaming rows would.
            var bytes = MemoryMarshal.AsBytes(expected.AsSpan());
            s.Write(bytes[..7]);
            s.Write(bytes[7..]);
        });
        using var tmp = new TempFiles();
        string path = tmp.File("streamed.gguf");
        writer.Write(path);
        using var f = GgufFile.Open(path);
        var got = MemoryMarshal.Cast<byte, float>(f.GetTensorBytes(f.GetTensor("streamed")));
        Assert.Equal(expected, got.ToArray());
    }

    [Theory]
    [InlineData(1199)]
    [InlineData(1201)]
    public void StreamingCallbackWithWrongLengthFailsAndLeavesNoFile(int written)
    {
        using var tmp = new TempFiles();
        string path = tmp.File("model.gguf");
        File.WriteAllBytes(path, [1, 2, 3]);     // a previous good file must survive a failed write

        var writer = new GgufWriter();
        writer.AddTensor("t", GgmlType.F32, [100, 3], s => s.Write(new byte[written]));
        var e = Assert.Throws<InvalidOperationException>(() => writer.Write(path));
        Assert.Contains("'t'", e.Message);

        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(tmp.Folder));
    }

    [Fact]
    public void SetMetadataReplacesInPlaceAndRemoveKeepsOrder()
    {
        var writer = new GgufWriter();
        writer.SetMetadata("a", GgufValue.FromUInt32(1));
        writer.SetMetadata("b", GgufValue.FromUInt32(2));
        writer.SetMetadata("c", GgufValue.FromUInt32(3));
        writer.SetMetadata("a", GgufValue.FromString("one"));
        Assert.True(writer.RemoveMetadata("b"));
        Assert.False(writer.RemoveMetadata("b"));
        writer.SetMetadata("d", GgufValue.FromUInt32(4));

        var ms = new MemoryStream();
        writer.Write(ms);
        using var tmp = new TempFiles();
        using var f = GgufFile.Open(tmp.Write("m.gguf", ms.ToArray()));
        Assert.Equal(["a", "c", "d"], f.MetadataList.Select(kv => kv.Key));
        Assert.Equal("one", f.GetString("a"));
        Assert.Equal(4, f.GetInteger("d"));
    }

    [Fact]
    public void WriterRejectsInvalidInputWithClearMessages()
    {
        var w = new GgufWriter();
        w.AddTensor("x", GgmlType.F32, [4], new byte[16]);

        Assert.Contains("duplicate", Assert.Throws<ArgumentException>(() => w.AddTensor("x", GgmlType.F32, [4], new byte[16])).Message);
        Assert.Contains("needs 16", Assert.Throws<ArgumentException>(() => w.AddTensor("y", GgmlType.F32, [4], new byte[15])).Message);
        Assert.Contains("not positive", Assert.Throws<ArgumentException>(() => w.AddTensor("y", GgmlType.F32, [4, 0], Array.Empty<byte>())).Message);
        Assert.Contains("dimensions", Assert.Throws<ArgumentException>(() => w.AddTensor("y", GgmlType.F32, [], Array.Empty<byte>())).Message);
        Assert.Contains("dimensions", Assert.Throws<ArgumentException>(() => w.AddTensor("y", GgmlType.F32, [1, 1, 1, 1, 1], new byte[4])).Message);
        Assert.Contains("overflows", Assert.Throws<ArgumentException>(() => w.AddTensor("y", GgmlType.F32, [1L << 32, 1L << 32], Array.Empty<byte>())).Message);
        Assert.Contains("block size 32", Assert.Throws<ArgumentException>(() => w.AddTensor("y", GgmlType.Q8_0, [48], new byte[51])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => w.AddTensor("y", (GgmlType)4, [4], new byte[16]));
        Assert.Contains("at most 63", Assert.Throws<ArgumentException>(() => w.AddTensor(new string('n', 64), GgmlType.F32, [1], new byte[4])).Message);
        Assert.Throws<ArgumentException>(() => w.AddTensor("", GgmlType.F32, [1], new byte[4]));

        Assert.Contains("uint32", Assert.Throws<ArgumentException>(() => w.SetMetadata("general.alignment", GgufValue.FromUInt64(32))).Message);
        Assert.Contains("power of two", Assert.Throws<ArgumentException>(() => w.SetMetadata("general.alignment", GgufValue.FromUInt32(48))).Message);
        Assert.Contains("power of two", Assert.Throws<ArgumentException>(() => w.SetMetadata("general.alignment", GgufValue.FromUInt32(0))).Message);
        Assert.Contains("surrogate", Assert.Throws<ArgumentException>(() => w.SetMetadata("k", GgufValue.FromString("a\ud800b"))).Message);
        Assert.Contains("surrogate", Assert.Throws<ArgumentException>(() => w.SetMetadata("k", GgufValue.FromArray(GgufArray.Of("ok", "\udc00")))).Message);

        var deep = GgufArray.Of(1);
        for (int i = 0; i < 8; i++)
            deep = GgufArray.Of(deep);
        Assert.Contains("nested 9 deep", Assert.Throws<ArgumentException>(() => w.SetMetadata("deep", GgufValue.FromArray(deep))).Message);

        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter(4));

        // Nothing invalid was recorded: the writer still writes the one good tensor.
        var ms = new MemoryStream();
        w.Write(ms);
        Assert.Equal(1, w.TensorCount);
    }

    [Fact]
    public void NestingAtTheDepthLimitRoundTrips()
    {
        var deep = GgufArray.Of(42);
        for (int i = 0; i < 7; i++)
            deep = GgufArray.Of(deep);
        Assert.Equal(8, deep.Depth);
        var w = new GgufWriter();
        w.SetMetadata("deep", GgufValue.FromArray(deep));
        var ms = new MemoryStream();
        w.Write(ms);
        using var tmp = new TempFiles();
        using var f = GgufFile.Open(tmp.Write("deep.gguf", ms.ToArray()));
        var a = f.GetArray("deep");
        for (int i = 0; i < 7; i++)
            a = ((GgufArray[])a.Items)[0];
        Assert.Equal([42], a.AsInt32s());
    }
}
