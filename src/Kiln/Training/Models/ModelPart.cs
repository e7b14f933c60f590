namespace Kiln.Training.Models;

/// <summary>
/// Which contiguous piece of a model one instance holds: blocks [FirstLayer, FirstLayer + LayerCount), plus the
/// embedding (first pipeline stage) and/or the final norm, output head and loss (last stage). A whole model is the one
/// piece that has all of them. Every piece holds at least one block.
/// </summary>
public sealed record ModelPart(int FirstLayer, int LayerCount, bool HasEmbedding, bool HasHead)
{
    public int EndLayer => FirstLayer + LayerCount;

    public static ModelPart Whole(TrainingConfig config) => new(0, config.Layers, true, true);

    /// <summary>Stage <paramref name="stage"/> of <paramref name="stages"/> equal contiguous stages.</summary>
    public static ModelPart Stage(TrainingConfig config, int stage, int stages)
    {
        if (stages < 1 || (uint)stage >= (uint)stages)
            throw new ArgumentOutOfRangeException(nameof(stage), $"stage {stage} of {stages}");
        if (config.Layers % stages != 0)
            throw new TrainingConfigException($"pipeline parallel over {stages} stages needs layers divisible by {stages}; the model has {config.Layers}");
        int per = config.Layers / stages;
        return new ModelPart(stage * per, per, stage == 0, stage == stages - 1);
    }

    internal void Validate(TrainingConfig config)
    {
        if (FirstLayer < 0 || LayerCount < 1 || EndLayer > config.Layers)
            throw new TrainingConfigException($"layers {FirstLayer}..{EndLayer} are not a piece of a model of {config.Layers} layers");
    }
}
