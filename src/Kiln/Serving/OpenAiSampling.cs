using Kiln.Inference.Sampling;

namespace Kiln.Serving;

/// <summary>
/// Sampler options from OpenAI-style parameters, with OpenAI's defaults where one is absent (temperature 1, top-p 1,
/// no top-k, no min-p, no penalties) rather than llama.cpp's. Shared by the HTTP server and <see cref="KilnChatClient"/>.
/// </summary>
public static class OpenAiSampling
{
    /// <param name="penaltyWindow">Tokens the penalties look back over (the context length, as OpenAI counts the whole text).</param>
    public static SamplerOptions Create(double? temperature = null, double? topP = null, int? topK = null, double? minP = null,
        double? presencePenalty = null, double? frequencyPenalty = null, double? repetitionPenalty = null, long? seed = null, int penaltyWindow = 4096)
    {
        double p = topP ?? 1.0;
        double presence = presencePenalty ?? 0;
        double frequency = frequencyPenalty ?? 0;
        double repetition = repetitionPenalty ?? 1;
        var options = new SamplerOptions
        {
            // top_p = 0 keeps only the most likely token.
            Temperature = p == 0 ? 0f : (float)(temperature ?? 1.0),
            TopP = p == 0 ? 1f : (float)p,
            TopK = topK ?? 0,
            MinP = (float)(minP ?? 0),
            PresencePenalty = (float)presence,
            FrequencyPenalty = (float)frequency,
            RepeatPenalty = (float)repetition,
            RepeatLastN = presence != 0 || frequency != 0 || repetition != 1 ? Math.Clamp(penaltyWindow, 1, SamplerOptions.MaxRepeatLastN) : 0,
            Seed = unchecked((ulong)(seed ?? Random.Shared.NextInt64())),
        };
        options.Validate();
        return options;
    }
}
