namespace Kiln.Training.Optimization;

/// <summary>Linear warm-up to the peak rate, then cosine decay to the floor at the last step (nanoGPT's schedule).</summary>
public sealed record LearningRateSchedule(float Peak, float Floor, int WarmupSteps, int TotalSteps)
{
    /// <summary>The rate for update number <paramref name="step"/> (0-based).</summary>
    public float At(long step)
    {
        if (step < WarmupSteps)
            return Peak * (step + 1) / WarmupSteps;
        if (step >= TotalSteps || TotalSteps <= WarmupSteps)
            return Floor;
        double ratio = (double)(step - WarmupSteps) / (TotalSteps - WarmupSteps);
        double coefficient = 0.5 * (1 + Math.Cos(Math.PI * ratio));
        return (float)(Floor + coefficient * (Peak - Floor));
    }
}
