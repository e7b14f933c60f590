namespace Kiln.Training;

/// <summary>A model or training configuration that cannot work (heads not dividing the width, a checkpoint of another shape …).</summary>
public sealed class TrainingConfigException(string message) : Exception(message);
