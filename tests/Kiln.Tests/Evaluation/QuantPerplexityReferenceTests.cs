using Xunit.Abstractions;

namespace Kiln.Tests.Evaluation;

/// <summary>
/// Kiln's perplexity of the random tiny256 model and its llama-quantize'd files against
/// llama-perplexity's (../shared/refs/quant/quant_refs.json). A file joins when Kiln computes all of
/// its tensor types: add one InlineData line.
/// </summary>
[Collection(WholeMachineCollection.Name)]
public sealed class QuantPerplexityReferenceTests(ITestOutputHelper output)
{
    [SharedTheory]
    [InlineData("tiny256-f32.gguf")]
    [InlineData("tiny256-Q8_0-pure.gguf")]
    [InlineData("tiny256-Q8_0.gguf")]
    [InlineData("tiny256-Q4_0-pure.gguf")]
    [InlineData("tiny256-Q4_1-pure.gguf")]
    [InlineData("tiny256-Q5_0-pure.gguf")]
    [InlineData("tiny256-Q5_1-pure.gguf")]
    [InlineData("tiny256-Q2_K-pure.gguf")]
    [InlineData("tiny256-Q3_K-pure.gguf")]
    [InlineData("tiny256-Q4_K-pure.gguf")]
    [InlineData("tiny256-Q5_K-pure.gguf")]
    [InlineData("tiny256-Q6_K-pure.gguf")]
    [InlineData("tiny256-Q4_K_M.gguf")]
    public void PerplexityEqualsLlamaCppWithinHalfAPercent(string file)
    {
        var reference = PerplexityReference.Quant(file);
        var a = PerplexityAgreement.Measure(reference);
        output.WriteLine(a.Describe());

        Assert.Equal(reference.Chunks, a.Result.Chunks);
        Assert.True(a.PerplexityRelativeDifference < 5e-3, a.Describe());
        Assert.True(a.WorstChunkRelativeDifference < 5e-3, a.Describe());
    }
}
