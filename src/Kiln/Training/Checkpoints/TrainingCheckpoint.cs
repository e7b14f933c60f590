using System.Text.Json;
using Kiln.Training.Data;

namespace Kiln.Training.Checkpoints;

/// <summary>
/// Everything a run needs to continue bit-identically: model config, trainer options, step, the optimizer's update
/// count and moments, the weights, the RNG state and the data position. Layout (little-endian): "KILNCKPT", uint32
/// version, uint32 JSON length, JSON {config, options}, int64 step, int64 updates, 4 × uint64 RNG state, int64
/// epoch, int64 index, int64 parameter count, then weights, first and second moments as float32, then the SHA-256
/// of all preceding bytes (<see cref="CheckpointFile"/>, which also writes it atomically).
/// </summary>
public sealed class TrainingCheckpoint
{
    private static ReadOnlySpan<byte> Magic => "KILNCKPT"u8;

    public required TrainingConfig Config { get; init; }
    public required TrainerOptions Options { get; init; }
    public required long Step { get; init; }
    public required long UpdateCount { get; init; }
    public required ulong[] RandomState { get; init; }
    public required LoaderPosition DataPosition { get; init; }
    public required float[] Weights { get; init; }
    public required float[] FirstMoment { get; init; }
    public required float[] SecondMoment { get; init; }

    private sealed record Header(TrainingConfig Config, TrainerOptions Options);

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    /// <summary>
    /// Throws <see cref="TrainingConfigException"/> unless a run of <paramref name="config"/> with
    /// <paramref name="options"/> continues this one: the same model, and the options that decide which data a step
    /// sees (global batch, sequence, accumulation, seed, shuffling). Step count, rates and clipping may change.
    /// </summary>
    public void EnsureContinuedBy(TrainingConfig config, TrainerOptions options)
    {
        if (Config != config)
            throw new TrainingConfigException($"the checkpoint is of another model configuration:\n{Config.ToJson()}\nnot\n{config.ToJson()}");
        var saved = Options;
        if (saved.Batch != options.Batch || saved.SequenceLength != options.SequenceLength || saved.GradAccum != options.GradAccum
            || saved.Seed != options.Seed || saved.Shuffle != options.Shuffle)
            throw new TrainingConfigException(
                $"the checkpoint was trained with batch {saved.Batch}, sequence {saved.SequenceLength}, grad-accum {saved.GradAccum}, seed {saved.Seed}, shuffle {saved.Shuffle}; resume with the same");
    }

    public void Write(string path) =>
        CheckpointFile.Write(path, Magic, JsonSerializer.SerializeToUtf8Bytes(new Header(Config, Options), Json),
            new CheckpointFile.State(Step, UpdateCount, RandomState, DataPosition, Weights, FirstMoment, SecondMoment));

    public static TrainingCheckpoint Read(string path)
    {
        var (json, state) = CheckpointFile.Read(path, Magic, "Kiln checkpoint");
        Header header;
        try
        {
            header = JsonSerializer.Deserialize<Header>(json, Json) ?? throw new InvalidDataException($"{path}: empty header");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: bad checkpoint header ({e.Message})");
        }
        return new TrainingCheckpoint
        {
            Config = header.Config,
            Options = header.Options,
            Step = state.Step,
            UpdateCount = state.UpdateCount,
            RandomState = state.RandomState,
            DataPosition = state.DataPosition,
            Weights = state.Weights,
            FirstMoment = state.FirstMoment,
            SecondMoment = state.SecondMoment,
        };
    }
}
