using Kiln.Inference.Sampling;

namespace Kiln.Tests.Inference.Sampling;

public class SamplerOptionsTests
{
    [Fact]
    public void Defaults_AreLlamaCppCommonParamsSampling()
    {
        // llama.cpp b4748 common/common.h, struct common_params_sampling.
        var o = new SamplerOptions();
        Assert.Equal(0.8f, o.Temperature);
        Assert.Equal(40, o.TopK);
        Assert.Equal(0.95f, o.TopP);
        Assert.Equal(0.05f, o.MinP);
        Assert.Equal(1.0f, o.RepeatPenalty);
        Assert.Equal(64, o.RepeatLastN);
        Assert.Equal(0f, o.FrequencyPenalty);
        Assert.Equal(0f, o.PresencePenalty);
        o.Validate();
    }

    public static TheoryData<SamplerOptions, string> Invalid => new()
    {
        { new SamplerOptions { Temperature = float.NaN }, "Temperature" },
        { new SamplerOptions { Temperature = -0.1f }, "Temperature" },
        { new SamplerOptions { Temperature = float.PositiveInfinity }, "Temperature" },
        { new SamplerOptions { TopP = 0f }, "TopP" },
        { new SamplerOptions { TopP = -0.5f }, "TopP" },
        { new SamplerOptions { TopP = 1.0001f }, "TopP" },
        { new SamplerOptions { TopP = float.NaN }, "TopP" },
        { new SamplerOptions { MinP = -0.01f }, "MinP" },
        { new SamplerOptions { MinP = 1.01f }, "MinP" },
        { new SamplerOptions { MinP = float.NaN }, "MinP" },
        { new SamplerOptions { RepeatPenalty = 0f }, "RepeatPenalty" },
        { new SamplerOptions { RepeatPenalty = -1.1f }, "RepeatPenalty" },
        { new SamplerOptions { RepeatPenalty = float.NaN }, "RepeatPenalty" },
        { new SamplerOptions { RepeatPenalty = float.PositiveInfinity }, "RepeatPenalty" },
        { new SamplerOptions { RepeatLastN = -1 }, "RepeatLastN" },
        { new SamplerOptions { RepeatLastN = SamplerOptions.MaxRepeatLastN + 1 }, "RepeatLastN" },
        { new SamplerOptions { FrequencyPenalty = float.NaN }, "FrequencyPenalty" },
        { new SamplerOptions { FrequencyPenalty = float.NegativeInfinity }, "FrequencyPenalty" },
        { new SamplerOptions { PresencePenalty = float.NaN }, "PresencePenalty" },
        { new SamplerOptions { PresencePenalty = float.PositiveInfinity }, "PresencePenalty" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Validate_RejectsInvalidValue_NamingTheParameter(SamplerOptions options, string parameter)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(parameter, e.ParamName);
        Assert.Contains(parameter, e.Message);
        // The sampler refuses them too.
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(options, 10));
    }

    [Fact]
    public void Validate_AcceptsBoundaryAndDisabledValues()
    {
        new SamplerOptions { Temperature = 0f, TopK = -5, TopP = 1f, MinP = 0f, RepeatLastN = 0 }.Validate();
        new SamplerOptions { TopK = 0, TopP = 1e-6f, MinP = 1f, RepeatPenalty = 0.5f }.Validate();
        new SamplerOptions { FrequencyPenalty = -2f, PresencePenalty = -2f, RepeatLastN = SamplerOptions.MaxRepeatLastN }.Validate();
    }

    [Fact]
    public void Sampler_RejectsBadConstruction()
    {
        Assert.Throws<ArgumentNullException>(() => new Sampler(null!, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplerOptions(), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplerOptions(), -3));
    }
}
