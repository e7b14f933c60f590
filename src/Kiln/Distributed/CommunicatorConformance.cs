namespace Kiln.Distributed;

/// <summary>
/// Exercises every operation of a <see cref="Communicator"/> against results each rank computes by itself (sums of
/// values every rank can generate, copies of known blocks), so that a set-up can be checked without trusting it:
/// `kiln mpi-check` runs it under mpirun, the tests run it on <see cref="LocalCommunicator"/>. Values are multiples of
/// 1/4 small enough that every sum is exact in float and bfloat16 whatever order MPI adds in, so results are compared
/// bit for bit. Collective: every rank must call <see cref="Run"/>.
/// </summary>
public static class CommunicatorConformance
{
    /// <summary>
    /// The outcome: one entry per check, the ranks it failed on (agreed by all ranks), this rank's own failure messages,
    /// and the errors this rank provoked on purpose (what the communicator says when a receive does not fit).
    /// </summary>
    public sealed record Report(IReadOnlyList<string> Checks, IReadOnlyList<int> FailedRankCounts, IReadOnlyList<string> LocalFailures,
        IReadOnlyList<string> ExpectedErrors)
    {
        public int Failed => FailedRankCounts.Count(c => c > 0);
        public bool Passed => Failed == 0;
    }

    private static readonly (string Name, Func<Communicator, List<string>, string?> Run)[] Checks =
    [
        ("rank-size", (c, _) => RankAndSize(c)),
        ("allreduce-float", (c, _) => AllReduce<float>(c, 4099, v => v)),
        ("allreduce-float-1M", (c, _) => AllReduce<float>(c, (1 << 20) + 3, v => v)),
        ("allreduce-double", (c, _) => AllReduce<double>(c, 1000, v => v)),
        ("allreduce-int", (c, _) => AllReduce<int>(c, 1001, v => (int)(v * 4))),
        ("allreduce-long", (c, _) => AllReduce<long>(c, 257, v => (long)(v * 4) << 36)),
        ("allreduce-bf16", (c, _) => AllReduce<BFloat16>(c, 3001, v => (BFloat16)SmallInteger(v))),
        ("reduce-scatter-float", (c, _) => ReduceScatter<float>(c, 1023, v => v)),
        ("reduce-scatter-bf16", (c, _) => ReduceScatter<BFloat16>(c, 77, v => (BFloat16)SmallInteger(v))),
        ("allgather-float", (c, _) => AllGather<float>(c, 999, v => v)),
        ("allgather-long", (c, _) => AllGather<long>(c, 13, v => (long)(v * 4) << 40)),
        ("broadcast", (c, _) => Broadcast(c)),
        ("send-receive", (c, _) => SendReceive(c)),
        ("send-receive-async", (c, _) => SendReceiveAsync(c)),
        ("allreduce-async", (c, _) => AllReduceAsync(c)),
        ("split", (c, _) => Split(c)),
        ("receive-wrong-size", ReceiveWrongSize),
        ("barrier", (c, _) => { c.Barrier(); return null; }),
    ];

    public static IReadOnlyList<string> CheckNames { get; } = Checks.Select(c => c.Name).ToArray();

    /// <param name="beforeCheck">Called with each check's index before it runs (tests use it to make a rank fail mid-run).</param>
    public static Report Run(Communicator communicator, Action<int>? beforeCheck = null)
    {
        var failures = new List<string>();
        var errors = new List<string>();
        var flags = new int[Checks.Length];
        for (int i = 0; i < Checks.Length; i++)
        {
            beforeCheck?.Invoke(i);
            if (Checks[i].Run(communicator, errors) is { } failure)
            {
                failures.Add($"{Checks[i].Name}: {failure}");
                flags[i] = 1;
            }
        }
        communicator.AllReduce<int>(flags);
        return new Report(CheckNames, flags, failures, errors);
    }

    /// <summary>The value rank r contributes at index i: a multiple of 1/4 in [-7.5, 7.5], exact in every element type.</summary>
    public static float Value(int rank, int i) => ((rank * 37 + i * 11) % 61 - 30) * 0.25f;

    /// <summary>bfloat16 has 8 significant bits: integers in [-2, 2] keep sums over up to 128 ranks exact.</summary>
    private static float SmallInteger(float v) => ((int)(v * 4) % 5 + 5) % 5 - 2;

    private static T[] Fill<T>(int rank, int n, Func<float, T> make) where T : unmanaged
    {
        var data = new T[n];
        for (int i = 0; i < n; i++)
            data[i] = make(Value(rank, i));
        return data;
    }

    /// <summary>The sum over ranks of <paramref name="make"/>(Value(r, i)), added as double (exact for these values) and converted.</summary>
    private static T[] Sum<T>(int size, int n, Func<float, T> make) where T : unmanaged
    {
        var result = new T[n];
        var total = new double[n];
        for (int r = 0; r < size; r++)
            for (int i = 0; i < n; i++)
                total[i] += AsDouble(make(Value(r, i)));
        for (int i = 0; i < n; i++)
            result[i] = FromDouble<T>(total[i]);
        return result;
    }

    private static double AsDouble<T>(T v) => v switch
    {
        float f => f,
        double d => d,
        int n => n,
        long l => l,
        BFloat16 b => (float)b,
        _ => throw new NotSupportedException(typeof(T).Name),
    };

    private static T FromDouble<T>(double v)
    {
        object boxed = typeof(T) == typeof(float) ? (float)v
            : typeof(T) == typeof(double) ? v
            : typeof(T) == typeof(int) ? (int)v
            : typeof(T) == typeof(long) ? (long)v
            : (BFloat16)(float)v;
        return (T)boxed;
    }

    private static string? Compare<T>(ReadOnlySpan<T> actual, ReadOnlySpan<T> expected) where T : unmanaged
    {
        if (actual.Length != expected.Length)
            return $"{actual.Length} elements, expected {expected.Length}";
        for (int i = 0; i < actual.Length; i++)
            if (!EqualityComparer<T>.Default.Equals(actual[i], expected[i]))
                return $"element {i} is {actual[i]}, expected {expected[i]}";
        return null;
    }

    private static string? RankAndSize(Communicator c)
    {
        int[] data = [1, c.Rank];
        c.AllReduce<int>(data);
        if (data[0] != c.Size)
            return $"{data[0]} ranks answered, Size says {c.Size}";
        if (data[1] != c.Size * (c.Size - 1) / 2)
            return $"ranks sum to {data[1]}, not 0+1+…+{c.Size - 1}: ranks are not distinct";
        return null;
    }

    private static string? AllReduce<T>(Communicator c, int n, Func<float, T> make) where T : unmanaged
    {
        var data = Fill(c.Rank, n, make);
        c.AllReduce<T>(data);
        return Compare<T>(data, Sum(c.Size, n, make));
    }

    private static string? ReduceScatter<T>(Communicator c, int block, Func<float, T> make) where T : unmanaged
    {
        var send = Fill(c.Rank, block * c.Size, make);
        var mine = new T[block];
        c.ReduceScatter<T>(send, mine);
        return Compare<T>(mine, Sum(c.Size, block * c.Size, make).AsSpan(c.Rank * block, block));
    }

    private static string? AllGather<T>(Communicator c, int block, Func<float, T> make) where T : unmanaged
    {
        var all = new T[block * c.Size];
        c.AllGather<T>(Fill(c.Rank, block, make), all);
        for (int r = 0; r < c.Size; r++)
            if (Compare<T>(all.AsSpan(r * block, block), Fill(r, block, make)) is { } failure)
                return $"block of rank {r}: {failure}";
        return null;
    }

    private static string? Broadcast(Communicator c)
    {
        for (int root = 0; root < c.Size; root++)
        {
            var data = Fill(c.Rank, 300, v => (double)v);
            c.Broadcast<double>(data, root);
            if (Compare<double>(data, Fill(root, 300, v => (double)v)) is { } failure)
                return $"from root {root}: {failure}";
        }
        return null;
    }

    /// <summary>A blocking ring: even ranks send first, odd ranks receive first, so no rank waits on a rank that waits on it.</summary>
    private static string? SendReceive(Communicator c)
    {
        if (c.Size == 1)
            return null; // a blocking send to oneself may never return
        int next = (c.Rank + 1) % c.Size, previous = (c.Rank + c.Size - 1) % c.Size;
        var mine = Fill(c.Rank, 70000, v => v); // larger than MPI's eager limit: the send really waits for the receive
        var received = new float[mine.Length];
        if (c.Rank % 2 == 0)
        {
            c.Send<float>(mine, next, tag: 7);
            c.Receive<float>(received, previous, tag: 7);
        }
        else
        {
            c.Receive<float>(received, previous, tag: 7);
            c.Send<float>(mine, next, tag: 7);
        }
        return Compare<float>(received, Fill(previous, mine.Length, v => v));
    }

    /// <summary>A non-blocking ring with two tags, received in the opposite order to the sends: tags must match messages.</summary>
    private static string? SendReceiveAsync(Communicator c)
    {
        int next = (c.Rank + 1) % c.Size, previous = (c.Rank + c.Size - 1) % c.Size;
        var first = Fill(c.Rank, 5000, v => (BFloat16)v);
        var second = Fill(c.Rank + 1000, 3, v => (long)(v * 4));
        var gotSecond = new long[second.Length];
        var gotFirst = new BFloat16[first.Length];
        CommRequest[] requests =
        [
            c.ReceiveAsync<long>(gotSecond, previous, tag: 2),
            c.ReceiveAsync<BFloat16>(gotFirst, previous, tag: 1),
            c.SendAsync<BFloat16>(first, next, tag: 1),
            c.SendAsync<long>(second, next, tag: 2),
        ];
        while (!requests[0].Test())
            Thread.Yield();
        CommRequest.WaitAll(requests);
        return Compare<BFloat16>(gotFirst, Fill(previous, first.Length, v => (BFloat16)v))
            ?? Compare<long>(gotSecond, Fill(previous + 1000, second.Length, v => (long)(v * 4)));
    }

    private static string? AllReduceAsync(Communicator c)
    {
        var a = Fill(c.Rank, 100_000, v => v);
        var b = Fill(c.Rank, 513, v => (BFloat16)SmallInteger(v));
        var ra = c.AllReduceAsync<float>(a);
        var rb = c.AllReduceAsync<BFloat16>(b);
        while (!rb.Test())
            Thread.Yield();
        ra.Wait();
        ra.Wait(); // waiting twice is allowed
        return Compare<float>(a, Sum(c.Size, a.Length, v => v)) ?? Compare<BFloat16>(b, Sum(c.Size, b.Length, v => (BFloat16)SmallInteger(v)));
    }

    /// <summary>Two groups (even and odd ranks), each ordered by descending rank through the key.</summary>
    private static string? Split(Communicator c)
    {
        using var group = c.Split(color: c.Rank % 2, key: -c.Rank);
        int[] members = Enumerable.Range(0, c.Size).Where(r => r % 2 == c.Rank % 2).OrderDescending().ToArray();
        if (group.Size != members.Length || group.Rank != Array.IndexOf(members, c.Rank))
            return $"rank {group.Rank} of {group.Size}, expected {Array.IndexOf(members, c.Rank)} of {members.Length}";
        long[] sum = [c.Rank, 1];
        group.AllReduce<long>(sum);
        if (sum[0] != members.Sum() || sum[1] != members.Length)
            return $"the group's all-reduce gave {sum[0]} over {sum[1]} ranks, expected {members.Sum()} over {members.Length}";
        return null;
    }

    /// <summary>A receive whose buffer does not match the message must throw, not return partial or overrun data.</summary>
    private static string? ReceiveWrongSize(Communicator c, List<string> errors)
    {
        int next = (c.Rank + 1) % c.Size, previous = (c.Rank + c.Size - 1) % c.Size;
        foreach (int length in new[] { 4, 16 })
        {
            var send = c.SendAsync<float>(new float[8], next, tag: 40 + length);
            try
            {
                c.Receive<float>(new float[length], previous, tag: 40 + length);
                return $"a message of 8 floats was received into {length} without an error";
            }
            catch (CommunicatorException e)
            {
                errors.Add($"receiving 8 floats into {length}: {e.Message}");
            }
            send.Wait();
        }
        c.Barrier();
        return null;
    }
}
