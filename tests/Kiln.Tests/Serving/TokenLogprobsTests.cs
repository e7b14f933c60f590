using Kiln.Serving;

namespace Kiln.Tests.Serving;

public class TokenLogprobsTests
{
    [Theory]
    [InlineData(1, 0)]
    [InlineData(7, 3)]
    [InlineData(511, 510)]
    [InlineData(512, 0)]
    [InlineData(513, 512)]
    [InlineData(32000, 12345)]
    [InlineData(151936, 99)]
    public void LogSoftmaxOfMatchesTheDoubleReference(int vocab, int token)
    {
        var rng = new Random(vocab);
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++)
            logits[i] = (float)(rng.NextDouble() * 30 - 15);
        // Masked entries (constrained decoding sets them to −∞) have probability 0.
        for (int i = 0; i < vocab; i += 5)
            if (i != token)
                logits[i] = float.NegativeInfinity;

        float got = TokenLogprobs.LogSoftmaxOf(logits, token, out float max, out float logSum);

        double expected = ReferenceLogSoftmax.Of(logits)[token];
        Assert.Equal(expected, got, 1e-4);
        Assert.Equal(logits.Max(), max);
        Assert.Equal(expected, logits[token] - max - logSum, 1e-4);
        Assert.True(got <= 0);
    }

    [Fact]
    public void ASingleFiniteLogitHasProbabilityOne()
    {
        var logits = Enumerable.Repeat(float.NegativeInfinity, 1000).ToArray();
        logits[640] = 3.5f;
        Assert.Equal(0f, TokenLogprobs.LogSoftmaxOf(logits, 640, out _, out _));
        Assert.Equal(float.NegativeInfinity, TokenLogprobs.LogSoftmaxOf(logits, 3, out _, out _));
    }

    [Fact]
    public void TopListsTheMostLikelyTokensWithTheirLogprobs()
    {
        var rng = new Random(3);
        var logits = new float[2000];
        for (int i = 0; i < logits.Length; i++)
            logits[i] = rng.NextSingle() * 10;
        TokenLogprobs.LogSoftmaxOf(logits, 0, out float max, out float logSum);
        var top = TokenLogprobs.Top(logits, 5, max, logSum);
        var expected = logits.Select((l, i) => (l, i)).OrderByDescending(p => p.l).ThenBy(p => p.i).Take(5).ToArray();
        Assert.Equal(expected.Select(p => p.i), top.Select(t => t.Token));
        for (int k = 0; k < 5; k++)
            Assert.Equal(ReferenceLogSoftmax.Of(logits)[expected[k].i], top[k].Logprob, 1e-4);
    }
}
