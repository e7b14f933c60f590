using Kiln.Formats.Llama2c;

namespace Kiln.Tests.Formats.Llama2c;

public class Llama2cCheckpointTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ReadsEveryArrayFromItsPlace(bool shared)
    {
        using var files = new Llama2cSampleFiles();
        var m = Llama2cSampleFiles.RandomModel(shared: shared, seed: shared ? 3 : 4);
        string path = files.PathOf("model.bin");
        File.WriteAllBytes(path, Llama2cSampleFiles.CheckpointBytes(m));

        using var ckpt = Llama2cCheckpoint.Open(path);
        Assert.Equal(shared, ckpt.Config.SharedClassifier);
        Assert.Equal(m.Vocab, ckpt.Config.VocabSize);

        Assert.Equal(m.Embedding, ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.TokenEmbedding)));
        Assert.Equal(m.RmsFinal, ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.FinalNorm)));
        int d = m.Dim, h = m.Hidden, kv = m.KvDim;
        for (int l = 0; l < m.Layers; l++)
        {
            Assert.Equal(m.RmsAtt.AsSpan(l * d, d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.AttentionNorm, l)));
            Assert.Equal(m.Wq.AsSpan(l * d * d, d * d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.Query, l)));
            Assert.Equal(m.Wk.AsSpan(l * kv * d, kv * d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.Key, l)));
            Assert.Equal(m.Wv.AsSpan(l * kv * d, kv * d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.Value, l)));
            Assert.Equal(m.Wo.AsSpan(l * d * d, d * d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.AttentionOutput, l)));
            Assert.Equal(m.RmsFfn.AsSpan(l * d, d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.FeedForwardNorm, l)));
            Assert.Equal(m.W1.AsSpan(l * h * d, h * d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.FeedForwardGate, l)));
            Assert.Equal(m.W2.AsSpan(l * d * h, d * h).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.FeedForwardDown, l)));
            Assert.Equal(m.W3.AsSpan(l * h * d, h * d).ToArray(), ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.FeedForwardUp, l)));
        }
        if (shared)
            Assert.Throws<KeyNotFoundException>(() => ckpt.GetTensor(Llama2cWeight.Classifier));
        else
            Assert.Equal(m.Wcls, ckpt.ReadFloats(ckpt.GetTensor(Llama2cWeight.Classifier)));
    }

    [Fact]
    public void RejectsTruncatedCheckpoint()
    {
        using var files = new Llama2cSampleFiles();
        byte[] bytes = Llama2cSampleFiles.CheckpointBytes(Llama2cSampleFiles.RandomModel());
        string path = files.PathOf("short.bin");
        File.WriteAllBytes(path, bytes[..^4]);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Open(path));
        Assert.Contains($"is {bytes.Length - 4} bytes", e.Message);
        Assert.Contains($"exactly {bytes.Length} bytes", e.Message);
        Assert.Contains("truncated", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void RejectsTrailingBytes()
    {
        using var files = new Llama2cSampleFiles();
        byte[] bytes = Llama2cSampleFiles.CheckpointBytes(Llama2cSampleFiles.RandomModel());
        string path = files.PathOf("long.bin");
        File.WriteAllBytes(path, [.. bytes, 0, 0, 0, 0]);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Open(path));
        Assert.Contains("4 unexpected trailing bytes", e.Message);
    }

    [Fact]
    public void SharedFlagMismatchIsASizeError()
    {
        // An unshared checkpoint whose header claims a shared classifier leaves wcls as unexplained trailing data.
        using var files = new Llama2cSampleFiles();
        byte[] bytes = Llama2cSampleFiles.CheckpointBytes(Llama2cSampleFiles.RandomModel(shared: false));
        BitConverter.TryWriteBytes(bytes.AsSpan(20), 40);
        string path = files.PathOf("flag.bin");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Open(path));
        Assert.Contains($"{40 * 16 * 4} unexpected trailing bytes", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(27)]
    public void RejectsFileShorterThanHeader(int length)
    {
        using var files = new Llama2cSampleFiles();
        string path = files.PathOf("tiny.bin");
        File.WriteAllBytes(path, new byte[length]);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Open(path));
        Assert.Contains("header", e.Message);
    }

    [Fact]
    public void HugeHeaderOnSmallFileFailsWithoutAllocating()
    {
        // A 7B-sized header (dim 4096, 32 layers, vocab 32000) on a 1 KB file: a size error, not a 26 GB allocation.
        using var files = new Llama2cSampleFiles();
        string path = files.PathOf("huge.bin");
        File.WriteAllBytes(path, [.. Llama2cSampleFiles.Header(4096, 11008, 32, 32, 32, 32000, 2048), .. new byte[1000]]);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Open(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.Contains("is 1028 bytes", e.Message);
    }

    [Fact]
    public void ReadBytesChecksDestinationLength()
    {
        using var files = new Llama2cSampleFiles();
        string path = files.PathOf("model.bin");
        File.WriteAllBytes(path, Llama2cSampleFiles.CheckpointBytes(Llama2cSampleFiles.RandomModel()));
        using var ckpt = Llama2cCheckpoint.Open(path);
        var norm = ckpt.GetTensor(Llama2cWeight.FinalNorm);
        Assert.Throws<ArgumentException>(() => ckpt.ReadBytes(norm, new byte[norm.ByteLength - 1]));
    }

    [Fact]
    public void CopyToStreamsThroughASmallBuffer()
    {
        using var files = new Llama2cSampleFiles();
        var m = Llama2cSampleFiles.RandomModel(shared: false, seed: 9);
        byte[] file = Llama2cSampleFiles.CheckpointBytes(m);
        string path = files.PathOf("model.bin");
        File.WriteAllBytes(path, file);
        using var ckpt = Llama2cCheckpoint.Open(path);
        var cls = ckpt.GetTensor(Llama2cWeight.Classifier);
        using var sink = new MemoryStream();
        ckpt.CopyTo(cls, sink, new byte[7]); // 7 does not divide the 2560-byte array: the last chunk is partial
        Assert.Equal(file[^(m.Vocab * m.Dim * 4)..], sink.ToArray());
        Assert.Throws<ArgumentException>(() => ckpt.CopyTo(cls, sink, []));
    }

    [SharedFact]
    public void OpensStories260K()
    {
        using var ckpt = Llama2cCheckpoint.Open(SharedData.Path("models", "stories260K.bin"));
        var c = ckpt.Config;
        // Values from the shared data's README (Karpathy's published stories260K configuration).
        Assert.Equal((64, 172, 5, 8, 4, 512, 512, true),
            (c.Dim, c.HiddenDim, c.LayerCount, c.HeadCount, c.KvHeadCount, c.VocabSize, c.SeqLen, c.SharedClassifier));
        Assert.Equal(2 + 9 * 5, ckpt.Tensors.Count); // shared: no classifier array
    }
}
