using Xunit.Abstractions;

namespace Kiln.Tests.Evaluation;

/// <summary>Kiln's perplexity of the trained stories260K model against llama-perplexity's (../shared/refs/perplexity_refs.json).</summary>
[Collection(WholeMachineCollection.Name)]
public sealed class StoriesPerplexityReferenceTests(ITestOutputHelper output)
{
    [SharedFact]
    public void PerplexityAndEveryRunningValueEqualLlamaCpp()
    {
        var reference = PerplexityReference.Stories();
        var a = PerplexityAgreement.Measure(reference);
        output.WriteLine(a.Describe());

        Assert.Equal(reference.TokenCount, a.TokenCount);
        Assert.Equal(reference.Chunks, a.Result.Chunks);
        Assert.Equal(reference.Chunks * (PerplexityReference.ContextLength / 2 - 1), a.Result.ScoredTokens);
        // Measured: 9e-6 (the reference's own %.4f rounding is up to 1e-5) and 230 of 231 running values
        // printed identically; the bounds leave room for summation-order changes in the kernels.
        Assert.True(a.PerplexityRelativeDifference < 1e-4, a.Describe());
        Assert.True(a.UncertaintyRelativeDifference < 5e-4, a.Describe());
        Assert.True(a.WorstChunkRelativeDifference < 1e-4, a.Describe());
    }
}
