namespace Kiln.Training.Reporting;

/// <summary>One line of metrics.csv; ValidationLoss is NaN on steps without an evaluation.</summary>
public readonly record struct MetricsRow(long Step, double TrainLoss, double ValidationLoss, float LearningRate, double GradientNorm,
    double TokensPerSecond, double ElapsedSeconds);
