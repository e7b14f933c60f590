using Kiln.Inference.Sampling;

namespace Kiln.Tests.Inference.Sampling;

public class Xoshiro256StarStarTests
{
    [Fact]
    public void SplitMix64_FromZero_GivesThePublishedSequence()
    {
        // The widely published SplitMix64 outputs for state 0.
        ulong state = 0;
        Assert.Equal(0xE220A8397B1DCDAFUL, Xoshiro256StarStar.SplitMix64(ref state));
        Assert.Equal(0x6E789E6AA1B965F4UL, Xoshiro256StarStar.SplitMix64(ref state));
        Assert.Equal(0x06C45D188009454FUL, Xoshiro256StarStar.SplitMix64(ref state));
        Assert.Equal(0xF88BB8A8724C81ECUL, Xoshiro256StarStar.SplitMix64(ref state));
    }

    [Theory]
    // Values from an independent Python transcription of the reference C code (xoshiro256starstar.c, splitmix64.c).
    [InlineData(0UL, new[] { 0x99EC5F36CB75F2B4UL, 0xBF6E1F784956452AUL, 0x1A5F849D4933E6E0UL, 0x6AA594F1262D2D2CUL, 0xBBA5AD4A1F842E59UL })]
    [InlineData(12345UL, new[] { 0xBE6A36374160D49BUL, 0x214AAA0637A688C6UL, 0xF69D16DE9954D388UL, 0x0C60048C4E96E033UL, 0x8E2076AEED51C648UL })]
    public void Outputs_MatchReference(ulong seed, ulong[] expected)
    {
        var rng = new Xoshiro256StarStar(seed);
        foreach (ulong value in expected)
            Assert.Equal(value, rng.NextUInt64());
    }

    [Fact]
    public void NextDouble_IsInUnitInterval_AndRoughlyUniform()
    {
        var rng = new Xoshiro256StarStar(7);
        const int n = 100_000;
        var buckets = new int[10];
        for (int i = 0; i < n; i++)
        {
            double u = rng.NextDouble();
            Assert.InRange(u, 0.0, 0.9999999999999999);
            buckets[(int)(u * 10)]++;
        }
        foreach (int count in buckets)
            Assert.InRange(count, n / 10 - 600, n / 10 + 600);
    }
}
