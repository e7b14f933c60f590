using Kiln.Distributed;
using Kiln.Training;

namespace Kiln.Cli.Commands;

/// <summary>The values of the training flags `kiln train` and `kiln plan` share (--recompute, --schedule), parsed one way.</summary>
internal static class TrainingFlagValues
{
    public static Recomputation Recompute(string value) => value switch
    {
        "none" => Recomputation.None,
        "attn" => Recomputation.Attention,
        "block" => Recomputation.Block,
        "all" => Recomputation.Attention | Recomputation.Block,
        _ => throw new CliException($"--recompute '{value}' is not one of attn, block, all, none"),
    };

    public static string RecomputeName(Recomputation r) => r switch
    {
        Recomputation.None => "none",
        Recomputation.Attention => "attn",
        Recomputation.Block => "block",
        _ => "all",
    };

    public static string ScheduleName(PipelineSchedule s) => s == PipelineSchedule.GPipe ? "gpipe" : "1f1b";

    public static PipelineSchedule Schedule(string value) => value switch
    {
        "gpipe" => PipelineSchedule.GPipe,
        "1f1b" => PipelineSchedule.OneFOneB,
        _ => throw new CliException($"--schedule '{value}' is not one of gpipe, 1f1b"),
    };
}
