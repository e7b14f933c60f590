using System.Buffers;
using System.Runtime.CompilerServices;

namespace Kiln.Distributed;

/// <summary>
/// Ranks as threads of one process, sharing memory: the reference that the MPI communicator and every parallel
/// training mode are tested against without mpirun, and a way to try a layout on one machine. Reductions add the ranks
/// in rank order, so every rank gets the same bits. Sends are buffered (never block); the non-blocking collectives
/// run at once (they complete before returning), which keeps MPI's semantics without overlap. When one rank fails,
/// <see cref="Run{TResult}"/> aborts the others: their next exchange throws a <see cref="CommunicatorException"/>
/// naming the failed rank instead of waiting forever.
/// </summary>
public sealed unsafe class LocalCommunicator : Communicator
{
    private readonly Group _group;
    private readonly int _rank;

    private LocalCommunicator(Group group, int rank)
    {
        _group = group;
        _rank = rank;
    }

    public override int Rank => _rank;
    public override int Size => _group.Size;

    /// <summary>The world's communicators, one per rank (each to be used by one thread).</summary>
    public static LocalCommunicator[] CreateWorld(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        var world = new World();
        var group = new Group(world, size, Enumerable.Range(0, size).ToArray());
        return Enumerable.Range(0, size).Select(r => new LocalCommunicator(group, r)).ToArray();
    }

    /// <summary>
    /// Runs <paramref name="body"/> on <paramref name="size"/> threads, one rank each, and returns their results in
    /// rank order. The first failure aborts the other ranks and is rethrown (not the aborts it caused).
    /// </summary>
    public static TResult[] Run<TResult>(int size, Func<Communicator, TResult> body)
    {
        var comms = CreateWorld(size);
        var results = new TResult[size];
        var failures = new Exception?[size];
        var threads = new Thread[size];
        for (int r = 0; r < size; r++)
        {
            int rank = r;
            threads[r] = new Thread(() =>
            {
                try
                {
                    results[rank] = body(comms[rank]);
                }
                catch (Exception e)
                {
                    failures[rank] = e;
                    comms[rank]._group.World.Abort(comms[rank]._group.Members[rank], e);
                }
            }, maxStackSize: 16 << 20) { IsBackground = true, Name = $"kiln-rank-{rank}" };
            threads[r].Start();
        }
        foreach (var t in threads)
            t.Join();
        var world = comms[0]._group.World;
        if (world.FailedRank is int failed && failures.FirstOrDefault(f => f is not null and not CommunicatorException { FailedRank: not null }) is { } first)
            throw new CommunicatorException($"rank {failed} failed: {first.Message}", first) { FailedRank = failed };
        if (failures.FirstOrDefault(f => f is not null) is { } any)
            throw any;
        return results;
    }

    /// <summary>As <see cref="Run{TResult}"/> for bodies without a result.</summary>
    public static void Run(int size, Action<Communicator> body) =>
        Run(size, c => { body(c); return 0; });

    public override Communicator Split(int color, int key)
    {
        var slots = _group.Slots;
        slots[_rank] = (color, key);
        _group.Phase();
        if (_rank == 0)
        {
            var entries = new (int Color, int Key, int Rank)[Size];
            for (int r = 0; r < Size; r++)
            {
                var (c, k) = ((int, int))slots[r]!;
                entries[r] = (c, k, r);
            }
            var made = new Dictionary<int, (Group Group, int[] Order)>();
            foreach (var byColor in entries.GroupBy(e => e.Color))
            {
                int[] order = byColor.OrderBy(e => e.Key).ThenBy(e => e.Rank).Select(e => e.Rank).ToArray();
                made[byColor.Key] = (new Group(_group.World, order.Length, order.Select(r => _group.Members[r]).ToArray()), order);
            }
            _group.Shared = made;
        }
        _group.Phase();
        var (group, ranks) = ((Dictionary<int, (Group, int[])>)_group.Shared!)[color];
        var result = new LocalCommunicator(group, Array.IndexOf(ranks, _rank));
        _group.Phase();
        return result;
    }

    public override void Barrier() => _group.Phase();

    public override void AllReduce<T>(Span<T> data)
    {
        CheckElementType<T>();
        var scratch = ArrayPool<T>.Shared.Rent(data.Length);
        try
        {
            fixed (T* mine = data)
            {
                var pointers = Post(mine);
                SumInto<T>(pointers, 0, scratch.AsSpan(0, data.Length));
                _group.Phase(); // every rank has read every buffer: now each may overwrite its own
            }
            scratch.AsSpan(0, data.Length).CopyTo(data);
        }
        finally
        {
            ArrayPool<T>.Shared.Return(scratch);
        }
    }

    public override void ReduceScatter<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        CheckElementType<T>();
        CheckReduceScatter(send.Length, receive.Length);
        fixed (T* mine = send)
        {
            var pointers = Post(mine);
            SumInto<T>(pointers, (long)_rank * receive.Length, receive);
            _group.Phase();
        }
    }

    public override void AllGather<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        CheckElementType<T>();
        CheckAllGather(send.Length, receive.Length);
        fixed (T* mine = send)
        {
            var pointers = Post(mine);
            for (int r = 0; r < Size; r++)
                new ReadOnlySpan<T>((T*)pointers[r], send.Length).CopyTo(receive.Slice(r * send.Length, send.Length));
            _group.Phase();
        }
    }

    public override void Broadcast<T>(Span<T> data, int root)
    {
        CheckElementType<T>();
        CheckRank(root, nameof(root));
        fixed (T* mine = data)
        {
            var pointers = Post(mine);
            if (_rank != root)
                new ReadOnlySpan<T>((T*)pointers[root], data.Length).CopyTo(data);
            _group.Phase();
        }
    }

    public override void Send<T>(ReadOnlySpan<T> data, int destination, int tag)
    {
        CheckElementType<T>();
        CheckRank(destination, nameof(destination));
        _group.World.Post((_group, _rank, destination, tag), data.ToArray());
    }

    public override void Receive<T>(Span<T> data, int source, int tag)
    {
        CheckElementType<T>();
        CheckRank(source, nameof(source));
        var message = _group.World.Take((_group, source, _rank, tag), block: true)!;
        CopyMessage(message, data, source, tag);
    }

    public override CommRequest SendAsync<T>(ReadOnlyMemory<T> data, int destination, int tag)
    {
        Send(data.Span, destination, tag);
        return CompletedRequest.Instance;
    }

    public override CommRequest ReceiveAsync<T>(Memory<T> data, int source, int tag)
    {
        CheckElementType<T>();
        CheckRank(source, nameof(source));
        return new ReceiveRequest<T>(this, data, source, tag);
    }

    public override CommRequest AllReduceAsync<T>(Memory<T> data)
    {
        AllReduce(data.Span);
        return CompletedRequest.Instance;
    }

    public override void Dispose() { }

    private static void CopyMessage<T>(Array message, Span<T> data, int source, int tag) where T : unmanaged
    {
        if (message is not T[] typed || typed.Length != data.Length)
            throw new CommunicatorException(
                $"message from rank {source} with tag {tag} holds {message.Length} {message.GetType().GetElementType()!.Name}, not {data.Length} {typeof(T).Name}");
        typed.CopyTo(data);
    }

    /// <summary>Publishes this rank's buffer and waits until every rank has; returns all ranks' buffers.</summary>
    private nint[] Post(void* mine)
    {
        _group.Pointers[_rank] = (nint)mine;
        _group.Phase();
        return _group.Pointers;
    }

    private static void SumInto<T>(nint[] pointers, long offset, Span<T> destination) where T : unmanaged
    {
        int n = destination.Length;
        if (typeof(T) == typeof(float) || typeof(T) == typeof(BFloat16))
        {
            Span<float> acc = n <= 4096 ? stackalloc float[n] : new float[n];
            acc.Clear();
            foreach (nint p in pointers)
            {
                if (typeof(T) == typeof(float))
                {
                    var src = new ReadOnlySpan<float>((float*)p + offset, n);
                    for (int i = 0; i < n; i++) acc[i] += src[i];
                }
                else
                {
                    var src = new ReadOnlySpan<BFloat16>((BFloat16*)p + offset, n);
                    for (int i = 0; i < n; i++) acc[i] += (float)src[i];
                }
            }
            if (typeof(T) == typeof(float))
                acc.CopyTo(MemoryMarshalCast<T, float>(destination));
            else
            {
                var d = MemoryMarshalCast<T, BFloat16>(destination);
                for (int i = 0; i < n; i++) d[i] = (BFloat16)acc[i];
            }
            return;
        }
        destination.Clear();
        foreach (nint p in pointers)
        {
            if (typeof(T) == typeof(double)) Add(new ReadOnlySpan<double>((double*)p + offset, n), MemoryMarshalCast<T, double>(destination));
            else if (typeof(T) == typeof(int)) Add(new ReadOnlySpan<int>((int*)p + offset, n), MemoryMarshalCast<T, int>(destination));
            else Add(new ReadOnlySpan<long>((long*)p + offset, n), MemoryMarshalCast<T, long>(destination));
        }
    }

    private static void Add<TValue>(ReadOnlySpan<TValue> source, Span<TValue> destination) where TValue : System.Numerics.INumber<TValue>
    {
        for (int i = 0; i < source.Length; i++)
            destination[i] += source[i];
    }

    private static Span<TTo> MemoryMarshalCast<TFrom, TTo>(Span<TFrom> span) where TFrom : unmanaged where TTo : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<TFrom, TTo>(span);

    /// <summary>What all groups made from one world share: the abort signal and the point-to-point mailboxes.</summary>
    private sealed class World
    {
        private readonly CancellationTokenSource _abort = new();
        private readonly Dictionary<(Group, int, int, int), Queue<Array>> _mail = [];
        private int _failedRank = -1;

        public CancellationToken Token => _abort.Token;
        public int? FailedRank => Volatile.Read(ref _failedRank) is int r and >= 0 ? r : null;
        public string FailureMessage { get; private set; } = "";

        public void Abort(int worldRank, Exception e)
        {
            lock (_mail)
            {
                if (_failedRank >= 0)
                    return;
                FailureMessage = e.Message;
                Volatile.Write(ref _failedRank, worldRank);
                Monitor.PulseAll(_mail);
            }
            _abort.Cancel();
        }

        public CommunicatorException Aborted() =>
            new($"rank {FailedRank} failed: {FailureMessage}") { FailedRank = FailedRank };

        public void Post((Group, int, int, int) key, Array message)
        {
            lock (_mail)
            {
                if (!_mail.TryGetValue(key, out var queue))
                    _mail[key] = queue = new Queue<Array>();
                queue.Enqueue(message);
                Monitor.PulseAll(_mail);
            }
        }

        public Array? Take((Group, int, int, int) key, bool block)
        {
            lock (_mail)
            {
                while (true)
                {
                    if (_mail.TryGetValue(key, out var queue) && queue.Count > 0)
                        return queue.Dequeue();
                    if (FailedRank is not null)
                        throw Aborted();
                    if (!block)
                        return null;
                    Monitor.Wait(_mail);
                }
            }
        }
    }

    /// <summary>The ranks of one communicator: a barrier for the phases of each collective and slots to publish buffers in.</summary>
    private sealed class Group
    {
        private readonly System.Threading.Barrier _barrier;

        public Group(World world, int size, int[] members)
        {
            World = world;
            Size = size;
            Members = members;
            _barrier = new System.Threading.Barrier(size);
            Pointers = new nint[size];
            Slots = new object?[size];
        }

        public World World { get; }
        public int Size { get; }

        /// <summary>World rank of each member.</summary>
        public int[] Members { get; }

        public nint[] Pointers { get; }
        public object?[] Slots { get; }
        public object? Shared { get; set; }

        public void Phase()
        {
            try
            {
                _barrier.SignalAndWait(World.Token);
            }
            catch (OperationCanceledException)
            {
                throw World.Aborted();
            }
        }
    }

    private sealed class CompletedRequest : CommRequest
    {
        public static readonly CompletedRequest Instance = new();
        public override void Wait() { }
        public override bool Test() => true;
    }

    private sealed class ReceiveRequest<T>(LocalCommunicator owner, Memory<T> data, int source, int tag) : CommRequest where T : unmanaged
    {
        private bool _done;

        public override void Wait()
        {
            if (_done)
                return;
            var message = owner._group.World.Take((owner._group, source, owner._rank, tag), block: true)!;
            CopyMessage(message, data.Span, source, tag);
            _done = true;
        }

        public override bool Test()
        {
            if (_done)
                return true;
            if (owner._group.World.Take((owner._group, source, owner._rank, tag), block: false) is not { } message)
                return false;
            CopyMessage(message, data.Span, source, tag);
            return _done = true;
        }
    }
}
