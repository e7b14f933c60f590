using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>
/// Malformed files, one defect each, assembled by hand so the offending byte offset is known: each must give
/// exactly one GgufFormatException naming the field and that offset.
/// </summary>
public sealed class GgufHostileFileTests : IDisposable
{
    private const int Header = 24;
    private readonly TempFiles _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private GgufFormatException Reject(byte[] bytes)
    {
        string path = _tmp.Write($"bad-{Guid.NewGuid():N}.gguf", bytes);
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path).Dispose());
        Assert.StartsWith("GGUF: ", e.Message);
        Assert.Contains(path, e.Message);
        return e;
    }

    private static void AssertAt(GgufFormatException e, string field, long offset, string problem)
    {
        Assert.True(e.Field.Contains(field, StringComparison.Ordinal), $"field '{e.Field}' should mention '{field}' ({e.Message})");
        Assert.True(offset == e.ByteOffset, $"offset {e.ByteOffset}, expected {offset} ({e.Message})");
        Assert.True(e.Message.Contains(problem, StringComparison.Ordinal), $"message should mention '{problem}': {e.Message}");
        Assert.Contains($"at byte {offset}", e.Message);
    }

    /// <summary>A valid base: one kv, one F32 [4] tensor at offset 0, data aligned to 32.</summary>
    private static RawGgufBuilder WithOneTensor(string name = "t", uint type = 0, ulong offset = 0, params ulong[] dims) =>
        new RawGgufBuilder().Header(3, 1, 1).KvU32("k", 1).TensorInfo(name, type, offset, dims.Length == 0 ? [4] : dims);

    [Fact]
    public void ValidBaseOpens()
    {
        byte[] bytes = WithOneTensor().PadTo(32).Zeros(16).ToArray();
        using var f = GgufFile.Open(_tmp.Write("ok.gguf", bytes));
        Assert.Equal(16L, f.GetTensor("t").ByteSize);
    }

    [Fact]
    public void EmptyFile() => AssertAt(Reject([]), "magic", 0, "empty");

    [Fact]
    public void ShortFile() => AssertAt(Reject("GG"u8.ToArray()), "magic", 0, "too short");

    [Fact]
    public void BadMagic() => AssertAt(Reject(new RawGgufBuilder().Header(3, 0, 0, magic: "GGML").ToArray()), "magic", 0, "expected 'GGUF'");

    [Fact]
    public void LegacyGgjtMagicIsNamed() =>
        AssertAt(Reject(new RawGgufBuilder().Header(3, 0, 0, magic: "tjgg").ToArray()), "magic", 0, "legacy");

    [Theory]
    [InlineData(0u, "unsupported version 0")]
    [InlineData(1u, "v1")]
    [InlineData(4u, "unsupported version 4")]
    [InlineData(0x03000000u, "big-endian")]
    public void UnsupportedVersion(uint version, string problem) =>
        AssertAt(Reject(new RawGgufBuilder().Header(version, 0, 0).ToArray()), "version", 4, problem);

    [Fact]
    public void TruncatedHeader() =>
        AssertAt(Reject(new RawGgufBuilder().Header(3, 0, 0).ToArray()[..20]), "metadata_kv_count", 16, "truncated");

    [Fact]
    public void AbsurdKvCount() =>
        AssertAt(Reject(new RawGgufBuilder().Header(3, 0, 1UL << 40).KvU32("k", 1).ToArray()), "metadata_kv_count", 16, "cannot fit");

    [Fact]
    public void AbsurdTensorCount() =>
        AssertAt(Reject(new RawGgufBuilder().Header(3, ulong.MaxValue, 0).Zeros(64).ToArray()), "tensor_count", 8, "cannot fit");

    [Fact]
    public void TensorCountTooLargeForWhatFollowsTheMetadata() =>
        // 2 infos fit after the header (64 bytes) but not after the 17-byte kv has been read.
        AssertAt(Reject(new RawGgufBuilder().Header(3, 2, 1).KvU32("k", 1).Zeros(64 - 17).ToArray()), "tensor_count", 8, "after the metadata");

    [Fact]
    public void HugeStringLengthFailsFastWithoutAllocating()
    {
        byte[] bytes = new RawGgufBuilder().Header(3, 0, 1).U64(1UL << 60).Bytes("key"u8.ToArray()).U32(4).U32(1).ToArray();
        string path = _tmp.Write("huge-string.gguf", bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path).Dispose());
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        AssertAt(e, "metadata #0 key", Header, "string length 1152921504606846976 exceeds");
        Assert.True(allocated < 1 << 20, $"allocated {allocated} bytes");
    }

    [Theory]
    [InlineData(GgufValueType.UInt32)]
    [InlineData(GgufValueType.String)]
    [InlineData(GgufValueType.Array)]
    public void HugeArrayCountFailsFastWithoutAllocating(GgufValueType elementType)
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("arr").U32((uint)GgufValueType.Array);
        long countAt = b.Position + 4;
        byte[] bytes = b.U32((uint)elementType).U64(1UL << 60).Zeros(64).ToArray();
        string path = _tmp.Write("huge-array.gguf", bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path).Dispose());
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        AssertAt(e, "metadata #0 'arr' count", countAt, "array count 1152921504606846976");
        Assert.True(allocated < 1 << 20, $"allocated {allocated} bytes");
    }

    [Fact]
    public void StringArrayItemLongerThanFile()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("tokens").U32(9).U32(8).U64(2).Str("ok");
        long itemAt = b.Position;
        AssertAt(Reject(b.U64(1000).Bytes(1, 2, 3).ToArray()), "'tokens'[1]", itemAt, "exceeds");
    }

    [Theory]
    [InlineData(13u)]
    [InlineData(0xffffffffu)]
    public void InvalidValueTypeId(uint id)
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("k");
        long typeAt = b.Position;
        AssertAt(Reject(b.U32(id).U32(0).ToArray()), "metadata #0 'k' type", typeAt, $"invalid value type id {id}");
    }

    [Fact]
    public void InvalidArrayElementType()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("k").U32(9);
        long at = b.Position;
        AssertAt(Reject(b.U32(77).U64(0).ToArray()), "element type", at, "invalid value type id 77");
    }

    [Fact]
    public void InvalidNestedArrayElementType()
    {
        // array of 1 array whose element type is 42.
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("k").U32(9).U32(9).U64(1);
        long at = b.Position;
        AssertAt(Reject(b.U32(42).U64(0).ToArray()), "'k'[0] element type", at, "invalid value type id 42");
    }

    [Fact]
    public void DeepNestingIsLimited()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("k").U32(9);
        // 10,000 levels of array-of-one-array: must stop at depth 9, not recurse until the stack overflows.
        for (int i = 0; i < 8; i++)
            b.U32(9).U64(1);
        long ninthAt = b.Position;
        for (int i = 8; i < 10_000; i++)
            b.U32(9).U64(1);
        AssertAt(Reject(b.ToArray()), "'k'[0][0][0][0][0][0][0][0]", ninthAt, "nested more than 8 deep");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(255)]
    public void BoolByteNotZeroOrOne(byte value)
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("flag").U32(7);
        long at = b.Position;
        AssertAt(Reject(b.U8(value).ToArray()), "'flag'", at, $"bool byte is {value}");
    }

    [Fact]
    public void BoolArrayItemNotZeroOrOne()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("flags").U32(9).U32(7).U64(3).U8(1).U8(0);
        long at = b.Position;
        AssertAt(Reject(b.U8(9).ToArray()), "'flags'[2]", at, "bool byte is 9");
    }

    [Fact]
    public void InvalidUtf8InKey() =>
        AssertAt(Reject(new RawGgufBuilder().Header(3, 0, 1).StrBytes([0x6b, 0xff]).U32(4).U32(1).ToArray()),
            "metadata #0 key", Header, "not valid UTF-8");

    [Fact]
    public void InvalidUtf8InStringValue()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("name").U32(8);
        long at = b.Position;
        // An overlong encoding of '/' (C0 AF) and a lone surrogate (ED A0 80) are both invalid UTF-8.
        AssertAt(Reject(b.StrBytes([0x61, 0xc0, 0xaf]).ToArray()), "'name'", at, "not valid UTF-8");
        var b2 = new RawGgufBuilder().Header(3, 0, 1).Str("name").U32(8);
        AssertAt(Reject(b2.StrBytes([0xed, 0xa0, 0x80]).ToArray()), "'name'", at, "not valid UTF-8");
    }

    [Fact]
    public void InvalidUtf8InStringArrayItem()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("tokens").U32(9).U32(8).U64(2).Str("fine");
        long at = b.Position;
        AssertAt(Reject(b.StrBytes([0xe2, 0x82]).ToArray()), "'tokens'[1]", at, "not valid UTF-8");
    }

    [Fact]
    public void InvalidUtf8InTensorName()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0);
        long at = b.Position;
        AssertAt(Reject(b.StrBytes([0x80]).U32(1).U64(4).U32(0).U64(0).PadTo(32).Zeros(16).ToArray()),
            "tensor info #0 name", at, "not valid UTF-8");
    }

    [Fact]
    public void DuplicateMetadataKey()
    {
        var b = new RawGgufBuilder().Header(3, 0, 2).KvU32("dup", 1);
        long at = b.Position;
        AssertAt(Reject(b.KvU32("dup", 2).ToArray()), "metadata #1 key 'dup'", at, "duplicate metadata key");
    }

    [Fact]
    public void DuplicateTensorName()
    {
        var b = new RawGgufBuilder().Header(3, 2, 0).TensorInfo("w", 0, 0, 4);
        long at = b.Position;
        AssertAt(Reject(b.TensorInfo("w", 0, 32, 4).PadTo(32).Zeros(64).ToArray()), "tensor info #1 name 'w'", at, "duplicate tensor name");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(5u)]
    [InlineData(0x80000000u)]
    public void DimensionCountOutOfRange(uint nDims)
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w");
        long at = b.Position;
        AssertAt(Reject(b.U32(nDims).Zeros(128).ToArray()), "tensor info #0 'w' n_dims", at, $"n_dims {nDims} is not in 1..4");
    }

    [Fact]
    public void ZeroDimension()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(2).U64(4);
        long at = b.Position;
        AssertAt(Reject(b.U64(0).U32(0).U64(0).PadTo(32).Zeros(32).ToArray()), "tensor info #0 'w' dimension 1", at, "0 is not positive");
    }

    [Fact]
    public void NegativeDimension()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(1);
        long at = b.Position;
        AssertAt(Reject(b.U64(unchecked((ulong)-4L)).U32(0).U64(0).PadTo(32).Zeros(32).ToArray()), "dimension 0", at, "does not fit in int64");
    }

    [Fact]
    public void ElementCountOverflow()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(3).U64(1UL << 32).U64(1UL << 30);
        long at = b.Position;
        AssertAt(Reject(b.U64(4).U32(0).U64(0).PadTo(32).Zeros(32).ToArray()), "dimension 2", at, "overflows int64");
    }

    [Fact]
    public void ByteSizeOverflowEvenThoughElementCountFits()
    {
        // 2^62 F64 elements: the count fits in int64, the 2^65 bytes do not.
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(1).U64(1UL << 62);
        long at = b.Position;
        AssertAt(Reject(b.U32((uint)GgmlType.F64).U64(0).PadTo(32).Zeros(32).ToArray()), "tensor info #0 'w'", at, "overflows int64");
    }

    [Theory]
    [InlineData(4u)]      // removed Q4_2
    [InlineData(31u)]     // removed Q4_0_4_4
    [InlineData(36u)]
    [InlineData(1000u)]
    public void UnknownGgmlType(uint type)
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(1).U64(32);
        long at = b.Position;
        AssertAt(Reject(b.U32(type).U64(0).PadTo(32).Zeros(64).ToArray()), "tensor info #0 'w' type", at, $"unknown ggml type id {type}");
    }

    [Fact]
    public void RowLengthNotAMultipleOfBlockSize()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(2).U64(48).U64(2);
        long at = b.Position;
        AssertAt(Reject(b.U32((uint)GgmlType.Q8_0).U64(0).PadTo(32).Zeros(256).ToArray()), "dimension 0", at, "not a multiple of the q8_0 block size 32");
    }

    [Fact]
    public void KQuantRowShorterThanItsSuperBlock()
    {
        // a K-quant row must hold whole 256-element super-blocks: a 128-wide Q4_K tensor is refused at open time
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(2).U64(128).U64(2);
        long at = b.Position;
        AssertAt(Reject(b.U32((uint)GgmlType.Q4_K).U64(0).PadTo(32).Zeros(288).ToArray()), "dimension 0", at, "not a multiple of the q4_k block size 256");
    }

    [Fact]
    public void UnalignedTensorOffset()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(1).U64(4).U32(0);
        long at = b.Position;
        AssertAt(Reject(b.U64(16).PadTo(32).Zeros(64).ToArray()), "tensor info #0 'w' offset", at, "not a multiple of the alignment 32");
    }

    [Fact]
    public void TensorDataPastEndOfFile()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(1).U64(16).U32(0);
        long at = b.Position;
        AssertAt(Reject(b.U64(0).PadTo(32).Zeros(63).ToArray()), "tensor info #0 'w' offset", at, "extends past the end");
    }

    [Fact]
    public void TensorOffsetFarPastEndDoesNotOverflow()
    {
        var b = new RawGgufBuilder().Header(3, 1, 0).Str("w").U32(1).U64(4).U32(0);
        long at = b.Position;
        AssertAt(Reject(b.U64(ulong.MaxValue - 31).PadTo(32).Zeros(16).ToArray()), "offset", at, "extends past the end");
    }

    [Fact]
    public void DataSectionStartsPastEndOfFile() =>
        // The infos end at byte 60; the data section would begin at 64, beyond the file.
        AssertAt(Reject(new RawGgufBuilder().Header(3, 1, 0).TensorInfo("w", 0, 0, 1).ToArray()), "data section", 64, "past the end");

    [Fact]
    public void OverlappingTensors()
    {
        var b = new RawGgufBuilder().Header(3, 2, 0).TensorInfo("a", 0, 0, 16);   // bytes [0, 64)
        long at = b.Position + 8 + 1 + 4 + 8 + 4;                                     // offset field of "b"
        AssertAt(Reject(b.TensorInfo("b", 0, 32, 4).PadTo(32).Zeros(64).ToArray()), "tensor info #1 'b' offset", at, "overlaps tensor 'a'");
    }

    [Fact]
    public void OutOfOrderButDisjointTensorsAreAccepted()
    {
        byte[] bytes = new RawGgufBuilder().Header(3, 2, 0).TensorInfo("late", 0, 32, 4).TensorInfo("early", 0, 0, 8)
            .PadTo(32).Zeros(48).ToArray();
        using var f = GgufFile.Open(_tmp.Write("order.gguf", bytes));
        Assert.Equal(32UL, f.GetTensor("late").Offset);
    }

    [Fact]
    public void AlignmentWithWrongType()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("general.alignment").U32(10);
        long at = b.Position;
        AssertAt(Reject(b.U64(32).ToArray()), "'general.alignment'", at, "alignment must be uint32, found uint64");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(48u)]
    [InlineData(0x80000001u)]
    public void AlignmentNotAPowerOfTwo(uint alignment)
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("general.alignment").U32(4);
        long at = b.Position;
        AssertAt(Reject(b.U32(alignment).ToArray()), "'general.alignment'", at, $"alignment {alignment} is not a non-zero power of two");
    }

    [Fact]
    public void TruncatedInsideValue()
    {
        var b = new RawGgufBuilder().Header(3, 0, 1).Str("k").U32(10);
        long at = b.Position;
        AssertAt(Reject(b.U32(7).ToArray()), "metadata #0 'k'", at, "needs 8 bytes");
    }

    [Fact]
    public void MissingFileIsFileNotFound()
    {
        var e = Assert.Throws<FileNotFoundException>(() => GgufFile.Open(_tmp.File("nope.gguf")));
        Assert.Contains("nope.gguf", e.Message);
    }
}
