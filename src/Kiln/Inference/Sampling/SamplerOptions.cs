namespace Kiln.Inference.Sampling;

/// <summary>
/// Sampling parameters. Defaults are those of llama.cpp's <c>common_params_sampling</c> (b4748), so a run
/// with default options is comparable to <c>llama-cli</c> with default flags; the one deliberate difference
/// is <see cref="Seed"/>, which has no "random" sentinel: the caller chooses the seed.
/// </summary>
/// <remarks>
/// Disabled values: <see cref="Temperature"/> &lt;= 0 means greedy; <see cref="TopK"/> &lt;= 0 (negative
/// included, as in llama.cpp) disables top-k; <see cref="TopP"/> == 1 disables top-p; <see cref="MinP"/> == 0
/// disables min-p; <see cref="RepeatPenalty"/> == 1, <see cref="FrequencyPenalty"/> == 0 and
/// <see cref="PresencePenalty"/> == 0 disable the penalties, as does <see cref="RepeatLastN"/> == 0.
/// </remarks>
public sealed record SamplerOptions
{
    /// <summary>Largest accepted <see cref="RepeatLastN"/>: more than any context Kiln runs, and it bounds the history buffer.</summary>
    public const int MaxRepeatLastN = 1 << 20;

    /// <summary>Softmax temperature; &lt;= 0 selects greedy decoding (argmax, lowest id on ties).</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the K most likely tokens; &lt;= 0 disables.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Nucleus sampling: keep the smallest most-likely set whose probability reaches P; in (0, 1], 1 disables.</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Keep tokens whose probability is at least MinP times the top token's; in [0, 1], 0 disables.</summary>
    public float MinP { get; init; } = 0.05f;

    /// <summary>llama.cpp's <c>penalty_repeat</c>: a positive logit of a recent token is divided by it, a non-positive one multiplied; 1 disables.</summary>
    public float RepeatPenalty { get; init; } = 1.0f;

    /// <summary>How many of the most recently accepted tokens the penalties look at; 0 disables the penalties.</summary>
    public int RepeatLastN { get; init; } = 64;

    /// <summary>OpenAI-style frequency penalty: subtracts count * value from the logit of each recent token.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>OpenAI-style presence penalty: subtracts value once from the logit of each token seen recently.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>Seed of the sampler's own PRNG (xoshiro256**, seeded through SplitMix64): the same seed gives the same choices.</summary>
    public ulong Seed { get; init; }

    /// <summary>True when greedy decoding is selected (<see cref="Temperature"/> &lt;= 0).</summary>
    public bool IsGreedy => Temperature <= 0f;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid parameter.</summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature) || Temperature < 0f)
            throw Invalid(nameof(Temperature), Temperature, "must be a finite number >= 0 (0 = greedy)");
        if (!(TopP > 0f && TopP <= 1f))
            throw Invalid(nameof(TopP), TopP, "must be in (0, 1] (1 = disabled)");
        if (!(MinP >= 0f && MinP <= 1f))
            throw Invalid(nameof(MinP), MinP, "must be in [0, 1] (0 = disabled)");
        if (!float.IsFinite(RepeatPenalty) || RepeatPenalty <= 0f)
            throw Invalid(nameof(RepeatPenalty), RepeatPenalty, "must be a finite number > 0 (1 = disabled)");
        if (RepeatLastN < 0 || RepeatLastN > MaxRepeatLastN)
            throw Invalid(nameof(RepeatLastN), RepeatLastN, $"must be in [0, {MaxRepeatLastN}] (0 = disabled)");
        if (!float.IsFinite(FrequencyPenalty))
            throw Invalid(nameof(FrequencyPenalty), FrequencyPenalty, "must be a finite number (0 = disabled)");
        if (!float.IsFinite(PresencePenalty))
            throw Invalid(nameof(PresencePenalty), PresencePenalty, "must be a finite number (0 = disabled)");
        // TopK: every int is meaningful (<= 0 disables, as llama.cpp's --top-k), so nothing to reject.
    }

    internal bool PenaltiesEnabled =>
        RepeatLastN > 0 && (RepeatPenalty != 1f || FrequencyPenalty != 0f || PresencePenalty != 0f);

    private static ArgumentOutOfRangeException Invalid(string name, object value, string rule) =>
        new(name, value, $"Sampler option {name} {rule}.");
}
