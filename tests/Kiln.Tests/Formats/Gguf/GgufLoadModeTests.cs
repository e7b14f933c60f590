using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>A GGUF copied into huge-page memory reads exactly like the same file mapped.</summary>
public sealed class GgufLoadModeTests : IDisposable
{
    private readonly TempFiles _temp = new();

    public void Dispose() => _temp.Dispose();

    private string Model(GgmlType type = GgmlType.Q4_0) =>
        new RandomLlama { WeightType = type, Dim = 64, Ffn = 96 }.Write(_temp.File($"m-{type}.gguf"));

    [Fact]
    public void CopiedFileHasTheMappedFilesMetadataAndTensorBytes()
    {
        string path = Model();
        using var mapped = GgufFile.Open(path, GgufLoadMode.Map);
        using var copied = GgufFile.Open(path, GgufLoadMode.Copy);
        Assert.Equal(GgufLoadMode.Map, mapped.LoadMode);
        Assert.Equal(GgufLoadMode.Copy, copied.LoadMode);
        Assert.Equal(mapped.FileLength, copied.FileLength);
        Assert.Equal(mapped.DataOffset, copied.DataOffset);
        Assert.Equal(mapped.MetadataList.Select(kv => kv.Key), copied.MetadataList.Select(kv => kv.Key));
        Assert.Equal(mapped.GetString("general.architecture"), copied.GetString("general.architecture"));
        Assert.Equal(mapped.Tensors.Count, copied.Tensors.Count);
        Assert.NotEmpty(mapped.Tensors);
        byte[] file = File.ReadAllBytes(path);
        foreach (var t in mapped.Tensors)
        {
            var c = copied.GetTensor(t.Name);
            byte[] expected = file.AsSpan((int)(mapped.DataOffset + (long)t.Offset), (int)t.ByteSize).ToArray();
            Assert.Equal(expected, copied.GetTensorBytes(c).ToArray());
            Assert.Equal(expected, mapped.GetTensorBytes(t).ToArray());
        }
    }

    [Fact]
    public unsafe void TheCopyIsAlignedToAHugePage()
    {
        using var copied = GgufFile.Open(Model(), GgufLoadMode.Copy);
        byte* p = copied.GetTensorPointer(copied.Tensors[0]);
        long start = (long)p - copied.DataOffset - (long)copied.Tensors[0].Offset;
        Assert.Equal(0, start % (2 << 20));
    }

    [Theory]
    [InlineData(GgufLoadMode.Map)]
    [InlineData(GgufLoadMode.Copy)]
    public void DisposeIsIdempotentAndEndsTensorAccess(GgufLoadMode mode)
    {
        var file = GgufFile.Open(Model(), mode);
        var t = file.Tensors[0];
        file.Dispose();
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.GetTensorBytes(t).Length);
    }

    [Fact]
    public void AnEmptyFileIsTheSameFormatErrorCopiedOrMapped()
    {
        string path = _temp.Write("empty.gguf", []);
        var mapped = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path, GgufLoadMode.Map));
        var copied = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path, GgufLoadMode.Copy));
        Assert.Equal(mapped.Message, copied.Message);
    }

    [Fact]
    public void AMalformedFileIsTheSameFormatErrorCopiedOrMapped()
    {
        byte[] bytes = File.ReadAllBytes(Model());
        string path = _temp.Write("cut.gguf", bytes[..(bytes.Length - 100)]);
        var mapped = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path, GgufLoadMode.Map));
        var copied = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path, GgufLoadMode.Copy));
        Assert.Equal(mapped.Message, copied.Message);
    }

    [Fact]
    public void AutoMapsSmallFilesAndFilesThatDoNotFitInMemory()
    {
        Assert.Equal(GgufLoadMode.Map, GgufFile.ChooseLoadMode(GgufFile.AutoCopyMinBytes - 1));
        Assert.Equal(GgufLoadMode.Map, GgufFile.ChooseLoadMode(1L << 60));
        using var file = GgufFile.Open(Model(), GgufLoadMode.Auto);
        Assert.Equal(GgufLoadMode.Map, file.LoadMode);
    }

    [Fact]
    public void AutoCopiesALargeFileThatFitsOnLinux()
    {
        var expected = OperatingSystem.IsLinux() ? GgufLoadMode.Copy : GgufLoadMode.Map;
        // 64 MiB fits on any machine that runs this suite; the bound is what is checked here, not the machine.
        Assert.Equal(expected, GgufFile.ChooseLoadMode(GgufFile.AutoCopyMinBytes));
    }
}
