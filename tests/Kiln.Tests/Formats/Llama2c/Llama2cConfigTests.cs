using Kiln.Formats.Llama2c;

namespace Kiln.Tests.Formats.Llama2c;

public class Llama2cConfigTests
{
    [Fact]
    public void ParsesHeaderAndSharedFlagFromVocabSign()
    {
        var shared = Llama2cConfig.Parse(Llama2cSampleFiles.Header(64, 172, 5, 8, 4, 512, 512));
        Assert.Equal((64, 172, 5, 8, 4, 512, 512), (shared.Dim, shared.HiddenDim, shared.LayerCount, shared.HeadCount, shared.KvHeadCount, shared.VocabSize, shared.SeqLen));
        Assert.True(shared.SharedClassifier);
        Assert.Equal(8, shared.HeadSize);
        Assert.Equal(32, shared.KvDim);

        var separate = Llama2cConfig.Parse(Llama2cSampleFiles.Header(64, 172, 5, 8, 4, -512, 512));
        Assert.Equal(512, separate.VocabSize);
        Assert.False(separate.SharedClassifier);
    }

    [Fact]
    public void ExpectedFileSizeMatchesHandCount()
    {
        // stories260K: 28-byte header + floats: emb 512*64 + 5 layers * (64 + 64*64 + 2*32*64 + 64*64 + 64 + 3*172*64)
        // + final norm 64 + rope tables 2*512*4. The real file is 1,056,540 bytes.
        var config = Llama2cConfig.Parse(Llama2cSampleFiles.Header(64, 172, 5, 8, 4, 512, 512));
        Assert.Equal(1_056_540L, config.ExpectedFileSize);

        var separate = Llama2cConfig.Parse(Llama2cSampleFiles.Header(64, 172, 5, 8, 4, -512, 512));
        Assert.Equal(1_056_540L + 512 * 64 * 4, separate.ExpectedFileSize);
    }

    [Fact]
    public void WriteToRoundTrips()
    {
        foreach (int vocab in new[] { 512, -512 })
        {
            byte[] header = Llama2cSampleFiles.Header(64, 172, 5, 8, 4, vocab, 512);
            var buffer = new byte[28];
            Llama2cConfig.Parse(header).WriteTo(buffer);
            Assert.Equal(header, buffer);
        }
    }

    [Fact]
    public void LayoutFollowsRunCOrderAndSkipsRopeTables()
    {
        var config = new Llama2cConfig(16, 24, 2, 4, 2, 40, 8, sharedClassifier: false);
        var layout = config.Layout();
        Assert.Equal(Llama2cWeight.TokenEmbedding, layout[0].Weight);
        Assert.Equal(28L, layout[0].Offset);
        // Stacked per-layer arrays: both layers of wq before any wk.
        var wq1 = layout.Single(t => t.Weight == Llama2cWeight.Query && t.Layer == 1);
        Assert.Equal(28L + 4L * (40 * 16 + 2 * 16 + 16 * 16), wq1.Offset);
        var final = layout.Single(t => t.Weight == Llama2cWeight.FinalNorm);
        var cls = layout[^1];
        Assert.Equal(Llama2cWeight.Classifier, cls.Weight);
        Assert.Equal(final.Offset + 16 * 4 + 2 * 8 * 2 * 4, cls.Offset);
        Assert.Equal(config.ExpectedFileSize, cls.Offset + cls.ByteLength);
        Assert.Equal(3 + 9 * 2, layout.Count); // embedding, final norm, classifier + 9 per layer
    }

    [Theory]
    [InlineData(0, 172, 5, 8, 4, 512, 512, "dim is 0")]
    [InlineData(-64, 172, 5, 8, 4, 512, 512, "dim is -64")]
    [InlineData(64, 0, 5, 8, 4, 512, 512, "hidden_dim is 0")]
    [InlineData(64, 172, -1, 8, 4, 512, 512, "n_layers is -1")]
    [InlineData(64, 172, 5, 0, 4, 512, 512, "n_heads is 0")]
    [InlineData(64, 172, 5, 8, 0, 512, 512, "n_kv_heads is 0")]
    [InlineData(64, 172, 5, 8, 4, 0, 512, "vocab_size is 0")]
    [InlineData(64, 172, 5, 8, 4, 512, 0, "seq_len is 0")]
    [InlineData(64, 172, 5, 8, 4, int.MinValue, 512, "vocab_size -2147483648")]
    [InlineData(64, 172, 5, 7, 7, 512, 512, "n_heads (7) does not divide dim (64)")]
    [InlineData(64, 172, 5, 8, 3, 512, 512, "n_kv_heads (3) does not divide n_heads (8)")]
    [InlineData(64, 172, 5, 8, 16, 512, 512, "n_kv_heads (16) does not divide n_heads (8)")]
    [InlineData(24, 172, 5, 8, 4, 512, 512, "odd")]
    [InlineData(int.MaxValue - 3, int.MaxValue, int.MaxValue, 2, 2, int.MaxValue, int.MaxValue, "impossibly large")]
    [InlineData(1 << 30, 1 << 30, 1 << 30, 2, 2, 1 << 30, 1 << 30, "impossibly large")]
    public void RejectsBadHeaders(int dim, int hidden, int layers, int heads, int kvHeads, int vocab, int seqLen, string expected)
    {
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cConfig.Parse(Llama2cSampleFiles.Header(dim, hidden, layers, heads, kvHeads, vocab, seqLen)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void RejectsShortHeader()
    {
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cConfig.Parse(new byte[27]));
        Assert.Contains("header", e.Message);
    }
}
