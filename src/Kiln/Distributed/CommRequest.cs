namespace Kiln.Distributed;

/// <summary>A non-blocking operation in flight (MPI_Request). Wait before touching its buffer.</summary>
public abstract class CommRequest
{
    /// <summary>Blocks until the operation completes; throws <see cref="CommunicatorException"/> if it failed.</summary>
    public abstract void Wait();

    /// <summary>True once the operation has completed (then <see cref="Wait"/> returns at once).</summary>
    public abstract bool Test();

    /// <summary>Waits for each request in turn.</summary>
    public static void WaitAll(ReadOnlySpan<CommRequest> requests)
    {
        foreach (var r in requests)
            r.Wait();
    }
}
