namespace Kiln.Training.Data;

/// <summary>Where a <see cref="TokenBatchLoader"/> stands: the pass over the data and the next window in it.</summary>
public readonly record struct LoaderPosition(long Epoch, long Index);
