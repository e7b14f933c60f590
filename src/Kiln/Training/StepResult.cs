namespace Kiln.Training;

/// <summary>One optimizer step: its 1-based number, mean training loss over its micro-batches, gradient norm before clipping, rate used, tokens consumed.</summary>
public readonly record struct StepResult(long Step, double Loss, double GradientNorm, float LearningRate, long Tokens);
