namespace Kiln.Threading;

/// <summary>
/// A piece of work split over the <see cref="WorkerPool"/> by index range. Implementations are
/// long-lived objects whose fields are set before each run, so dispatching allocates nothing.
/// </summary>
public interface IParallelWork
{
    /// <summary>Processes items [begin, end). <paramref name="worker"/> is 0..ThreadCount-1, for per-thread scratch.</summary>
    void Execute(int begin, int end, int worker);
}
