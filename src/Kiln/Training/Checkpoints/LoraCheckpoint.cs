using System.Text.Json;
using Kiln.Training.Data;
using Kiln.Training.Lora;

namespace Kiln.Training.Checkpoints;

/// <summary>
/// A LoRA finetune in progress: the adapters' A and B (the only trained parameters), both AdamW moments, the step,
/// the optimizer's update count and the RNG state, which is also the data position (the finetuner draws its windows
/// from it). The header names what the run depends on (the base model file by name and size, rank, alpha, targets,
/// options, and the SHA-256 of the training token ids), so a resume against anything else is refused. The container is
/// <see cref="CheckpointFile"/>'s, as <see cref="TrainingCheckpoint"/>'s, under the magic "KILNLORA".
/// </summary>
public sealed class LoraCheckpoint
{
    private static ReadOnlySpan<byte> Magic => "KILNLORA"u8;

    public required string BaseModel { get; init; }
    public required long BaseBytes { get; init; }
    public required int Rank { get; init; }
    public required float Alpha { get; init; }

    /// <summary>Short target names, comma-separated in their fixed order (q,k,v,o,gate,up,down).</summary>
    public required string Targets { get; init; }

    public required LoraFinetuneOptions Options { get; init; }
    public required string DataSha256 { get; init; }
    public required long Step { get; init; }
    public required long UpdateCount { get; init; }
    public required ulong[] RandomState { get; init; }
    public required float[] Weights { get; init; }
    public required float[] FirstMoment { get; init; }
    public required float[] SecondMoment { get; init; }

    private sealed record Header(string BaseModel, long BaseBytes, int Rank, float Alpha, string Targets, LoraFinetuneOptions Options, string DataSha256);

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public void Write(string path) =>
        CheckpointFile.Write(path, Magic,
            JsonSerializer.SerializeToUtf8Bytes(new Header(BaseModel, BaseBytes, Rank, Alpha, Targets, Options, DataSha256), Json),
            new CheckpointFile.State(Step, UpdateCount, RandomState, new LoaderPosition(0, 0), Weights, FirstMoment, SecondMoment));

    public static LoraCheckpoint Read(string path)
    {
        var (json, state) = CheckpointFile.Read(path, Magic, "Kiln LoRA checkpoint");
        Header header;
        try
        {
            header = JsonSerializer.Deserialize<Header>(json, Json) ?? throw new InvalidDataException($"{path}: empty header");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: bad checkpoint header ({e.Message})");
        }
        return new LoraCheckpoint
        {
            BaseModel = header.BaseModel,
            BaseBytes = header.BaseBytes,
            Rank = header.Rank,
            Alpha = header.Alpha,
            Targets = header.Targets,
            Options = header.Options,
            DataSha256 = header.DataSha256,
            Step = state.Step,
            UpdateCount = state.UpdateCount,
            RandomState = state.RandomState,
            Weights = state.Weights,
            FirstMoment = state.FirstMoment,
            SecondMoment = state.SecondMoment,
        };
    }
}
