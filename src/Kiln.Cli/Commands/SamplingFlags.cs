using System.CommandLine;
using Kiln.Inference.Sampling;

namespace Kiln.Cli.Commands;

/// <summary>Sampling flags shared by run and chat, named as llama.cpp names them.</summary>
internal sealed class SamplingFlags
{
    private static readonly SamplerOptions Defaults = new();

    public readonly Option<float> Temperature = new("--temp") { Description = "Temperature; 0 = greedy", DefaultValueFactory = _ => Defaults.Temperature };
    public readonly Option<int> TopK = new("--top-k") { Description = "Keep the K most likely tokens; 0 = off", DefaultValueFactory = _ => Defaults.TopK };
    public readonly Option<float> TopP = new("--top-p") { Description = "Nucleus sampling mass; 1 = off", DefaultValueFactory = _ => Defaults.TopP };
    public readonly Option<float> MinP = new("--min-p") { Description = "Drop tokens below this fraction of the best one's probability; 0 = off", DefaultValueFactory = _ => Defaults.MinP };
    public readonly Option<float> RepeatPenalty = new("--repeat-penalty") { Description = "Penalty for repeated tokens; 1 = off", DefaultValueFactory = _ => Defaults.RepeatPenalty };
    public readonly Option<int> RepeatLastN = new("--repeat-last-n") { Description = "Tokens the penalties look back over", DefaultValueFactory = _ => Defaults.RepeatLastN };
    public readonly Option<float> FrequencyPenalty = new("--frequency-penalty") { Description = "Subtract count × this from a token's logit; 0 = off" };
    public readonly Option<float> PresencePenalty = new("--presence-penalty") { Description = "Subtract this from the logit of any token already present; 0 = off" };
    public readonly Option<ulong?> Seed = new("--seed", "-s") { Description = "Random seed (same seed, same text); default: random" };

    public void AddTo(Command command)
    {
        foreach (Option o in new Option[] { Temperature, TopK, TopP, MinP, RepeatPenalty, RepeatLastN, FrequencyPenalty, PresencePenalty, Seed })
            command.Options.Add(o);
    }

    public SamplerOptions Read(ParseResult r)
    {
        var options = new SamplerOptions
        {
            Temperature = r.GetValue(Temperature),
            TopK = r.GetValue(TopK),
            TopP = r.GetValue(TopP),
            MinP = r.GetValue(MinP),
            RepeatPenalty = r.GetValue(RepeatPenalty),
            RepeatLastN = r.GetValue(RepeatLastN),
            FrequencyPenalty = r.GetValue(FrequencyPenalty),
            PresencePenalty = r.GetValue(PresencePenalty),
            Seed = r.GetValue(Seed) ?? (ulong)Random.Shared.NextInt64(),
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message);
        }
        return options;
    }
}
