namespace Kiln.Distributed;

/// <summary>
/// A group of ranks that exchange data: MPI's communicator, reduced to what training needs. Collective calls must be
/// made by every rank of the group in the same order, as in MPI. Element types: float, double, int, long and
/// <see cref="BFloat16"/>; reductions are sums. Two implementations: <see cref="LocalCommunicator"/> (ranks are threads
/// of one process, for tests and for trying a layout without MPI) and the MPI one (ranks are processes started by
/// mpirun). Failures become <see cref="CommunicatorException"/>.
/// </summary>
public abstract class Communicator : IDisposable
{
    /// <summary>This process's (or thread's) index in the group, 0 ≤ Rank &lt; Size.</summary>
    public abstract int Rank { get; }

    public abstract int Size { get; }

    /// <summary>
    /// Collective: a new communicator per distinct <paramref name="color"/>, holding the ranks that passed it, ordered
    /// by <paramref name="key"/> then by rank here (MPI_Comm_split).
    /// </summary>
    public abstract Communicator Split(int color, int key);

    public abstract void Barrier();

    /// <summary>Collective: every rank's <paramref name="data"/> becomes the element-wise sum over the ranks.</summary>
    public abstract void AllReduce<T>(Span<T> data) where T : unmanaged;

    /// <summary>
    /// Collective: <paramref name="send"/> holds Size equal blocks; rank r receives block r of the element-wise sum.
    /// <c>send.Length == receive.Length · Size</c>.
    /// </summary>
    public abstract void ReduceScatter<T>(ReadOnlySpan<T> send, Span<T> receive) where T : unmanaged;

    /// <summary>Collective: block r of <paramref name="receive"/> is rank r's <paramref name="send"/>. <c>receive.Length == send.Length · Size</c>.</summary>
    public abstract void AllGather<T>(ReadOnlySpan<T> send, Span<T> receive) where T : unmanaged;

    /// <summary>Collective: every rank's <paramref name="data"/> becomes the root's.</summary>
    public abstract void Broadcast<T>(Span<T> data, int root) where T : unmanaged;

    /// <summary>Blocking send to one rank; returns once <paramref name="data"/> may be reused.</summary>
    public abstract void Send<T>(ReadOnlySpan<T> data, int destination, int tag) where T : unmanaged;

    /// <summary>Blocking receive of exactly data.Length elements from one rank with this tag.</summary>
    public abstract void Receive<T>(Span<T> data, int source, int tag) where T : unmanaged;

    /// <summary>Non-blocking send: <paramref name="data"/> must stay unchanged until the request completes.</summary>
    public abstract CommRequest SendAsync<T>(ReadOnlyMemory<T> data, int destination, int tag) where T : unmanaged;

    /// <summary>Non-blocking receive: <paramref name="data"/> holds the message once the request completes.</summary>
    public abstract CommRequest ReceiveAsync<T>(Memory<T> data, int source, int tag) where T : unmanaged;

    /// <summary>Non-blocking <see cref="AllReduce{T}"/> (MPI_Iallreduce): lets a backward pass go on while gradients travel.</summary>
    public abstract CommRequest AllReduceAsync<T>(Memory<T> data) where T : unmanaged;

    public abstract void Dispose();

    /// <summary>Throws unless <paramref name="rank"/> is a rank of this group.</summary>
    protected void CheckRank(int rank, string name)
    {
        if ((uint)rank >= (uint)Size)
            throw new ArgumentOutOfRangeException(name, rank, $"no rank {rank} in a group of {Size}");
    }

    /// <summary>Throws unless a reduce-scatter sends Size blocks of the receive length.</summary>
    protected void CheckReduceScatter(int sendLength, int receiveLength)
    {
        if (sendLength != (long)receiveLength * Size)
            throw new ArgumentException($"reduce-scatter sends {sendLength} elements, not {Size} blocks of {receiveLength}");
    }

    /// <summary>Throws unless an all-gather receives Size blocks of the send length.</summary>
    protected void CheckAllGather(int sendLength, int receiveLength)
    {
        if (receiveLength != (long)sendLength * Size)
            throw new ArgumentException($"all-gather receives {receiveLength} elements, not {Size} blocks of {sendLength}");
    }

    /// <summary>Throws unless T is one of the element types communicators carry.</summary>
    protected static void CheckElementType<T>() where T : unmanaged
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double) && typeof(T) != typeof(int)
            && typeof(T) != typeof(long) && typeof(T) != typeof(BFloat16))
            throw new NotSupportedException($"communicators carry float, double, int, long and bfloat16, not {typeof(T).Name}");
    }
}
