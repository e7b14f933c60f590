using System.Diagnostics;

namespace Kiln.Distributed;

/// <summary>
/// A communicator that adds up the wall time its caller spends blocked in communication: the whole of each blocking
/// call, and of a non-blocking operation only the time spent in its <see cref="CommRequest.Wait"/> (the time it
/// travels while the caller computes is not waiting). What a step's <c>ParallelStepTimes.Communication</c> reports.
/// Split communicators are timed into the same total. Disposing it leaves the inner communicator to its owner.
/// </summary>
public sealed class TimedCommunicator(Communicator inner) : Communicator
{
    private readonly Communicator _inner = inner;
    private readonly TimedCommunicator? _total;
    private long _ticks;

    private TimedCommunicator(Communicator inner, TimedCommunicator total) : this(inner) => _total = total;

    public override int Rank => _inner.Rank;
    public override int Size => _inner.Size;

    /// <summary>Time blocked in communication since the last <see cref="Reset"/>, this communicator's splits included.</summary>
    public TimeSpan Waited => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref Root._ticks));

    public void Reset() => Interlocked.Exchange(ref Root._ticks, 0);

    private TimedCommunicator Root => _total ?? this;

    private void Add(long start) => Interlocked.Add(ref Root._ticks, Stopwatch.GetTimestamp() - start);

    public override Communicator Split(int color, int key) => new TimedCommunicator(_inner.Split(color, key), Root);

    public override void Barrier()
    {
        long start = Stopwatch.GetTimestamp();
        try { _inner.Barrier(); } finally { Add(start); }
    }

    public override void AllReduce<T>(Span<T> data)
    {
        long start = Stopwatch.GetTimestamp();
        try { _inner.AllReduce(data); } finally { Add(start); }
    }

    public override void ReduceScatter<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        long start = Stopwatch.GetTimestamp();
        try { _inner.ReduceScatter(send, receive); } finally { Add(start); }
    }

    public override void AllGather<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        long start = Stopwatch.GetTimestamp();
        try { _inner.AllGather(send, receive); } finally { Add(start); }
    }

    public override void Broadcast<T>(Span<T> data, int root)
    {
        long start = Stopwatch.GetTimestamp();
        try { _inner.Broadcast(data, root); } finally { Add(start); }
    }

    public override void Send<T>(ReadOnlySpan<T> data, int destination, int tag)
    {
        long start = Stopwatch.GetTimestamp();
        try { _inner.Send(data, destination, tag); } finally { Add(start); }
    }

    public override void Receive<T>(Span<T> data, int source, int tag)
    {
        long start = Stopwatch.GetTimestamp();
        try { _inner.Receive(data, source, tag); } finally { Add(start); }
    }

    public override CommRequest SendAsync<T>(ReadOnlyMemory<T> data, int destination, int tag) =>
        Timed(() => _inner.SendAsync(data, destination, tag));

    public override CommRequest ReceiveAsync<T>(Memory<T> data, int source, int tag) =>
        Timed(() => _inner.ReceiveAsync(data, source, tag));

    public override CommRequest AllReduceAsync<T>(Memory<T> data) => Timed(() => _inner.AllReduceAsync(data));

    /// <summary>A split made through this one is freed here; the inner communicator given to the constructor is not.</summary>
    public override void Dispose()
    {
        if (_total is not null)
            _inner.Dispose();
    }

    // starting a non-blocking operation can itself block briefly (MPI may push a first segment): counted too
    private TimedRequest Timed(Func<CommRequest> begin)
    {
        long start = Stopwatch.GetTimestamp();
        try { return new TimedRequest(begin(), this); } finally { Add(start); }
    }

    private sealed class TimedRequest(CommRequest inner, TimedCommunicator owner) : CommRequest
    {
        public override void Wait()
        {
            long start = Stopwatch.GetTimestamp();
            try { inner.Wait(); } finally { owner.Add(start); }
        }

        public override bool Test() => inner.Test();
    }
}
