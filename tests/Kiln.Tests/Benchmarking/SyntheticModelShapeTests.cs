using Kiln.Benchmarking;

namespace Kiln.Tests.Benchmarking;

public class SyntheticModelShapeTests
{
    /// <summary>Parameter counts the models' publishers report (Hugging Face model cards / safetensors totals).</summary>
    [Theory]
    [InlineData("tinyllama-1.1b", 1_100_048_384L)]
    [InlineData("llama2-7b", 6_738_415_616L)]
    [InlineData("llama3-8b", 8_030_261_248L)]
    [InlineData("qwen2-0.5b", 494_032_768L)]
    public void PresetsHaveThePublishedParameterCounts(string name, long parameters) =>
        Assert.Equal(parameters, SyntheticModelShape.Find(name)!.ParameterCount);

    [Fact]
    public void PresetsCarryTheirConfigs()
    {
        var q = SyntheticModelShape.Find("QWEN2-0.5B")!;
        Assert.Equal(("qwen2", 896, 24, 14, 2, 4864, 151936), (q.Architecture, q.EmbeddingLength, q.BlockCount, q.HeadCount, q.HeadCountKv, q.FeedForwardLength, q.VocabSize));
        Assert.True(q.TiedEmbeddings && q.AttentionBiases);
        Assert.Equal(1_000_000f, q.RopeFreqBase);
        var l3 = SyntheticModelShape.Find("llama3-8b")!;
        Assert.Equal((8, 14336, 128256, 500_000f), (l3.HeadCountKv, l3.FeedForwardLength, l3.VocabSize, l3.RopeFreqBase));
        var t = SyntheticModelShape.Find("tinyllama-1.1b")!;
        Assert.Equal((2048, 22, 32, 4, 64), (t.EmbeddingLength, t.BlockCount, t.HeadCount, t.HeadCountKv, t.HeadDim));
        Assert.Null(SyntheticModelShape.Find("gpt-5"));
    }
}
