namespace Kiln.Training;

/// <summary>The loss or gradient norm stopped being a finite number; the step was not applied.</summary>
public sealed class TrainingDivergedException(long step, string what, string? note = null)
    : Exception($"{what} at step {step + 1}: training stopped, weights from before this step are kept{(note is null ? "" : "; " + note)}")
{
    public long Step { get; } = step;
    public string What { get; } = what;
}
