namespace Kiln.Training.Optimization;

/// <summary>AdamW hyperparameters; the defaults are GPT-2/llm.c's (β2 = 0.95, decay 0.1).</summary>
public sealed record AdamWOptions
{
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.95f;
    public float Epsilon { get; init; } = 1e-8f;
    public float WeightDecay { get; init; } = 0.1f;
}
