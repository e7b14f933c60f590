using System.Runtime.ExceptionServices;

namespace Kiln.Threading;

/// <summary>
/// Persistent worker threads for the forward pass. The calling thread is worker 0 and takes a share of
/// every job, so a pool of N threads owns N-1 background threads. A dispatch bumps a generation counter that
/// idle workers spin on; completion is a counter the caller spins on. Both sides spin for a bounded time
/// (<see cref="SpinTicks"/>) and then block on a monitor, so back-to-back ops cost about a microsecond each and an
/// idle pool costs no CPU. No allocation per dispatch.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    // ~100 µs: longer than the gap between two ops of a forward pass, far shorter than a pause between requests.
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 10_000;

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private IParallelWork? _work;
    private int _count;
    private int _grain;
    private int _chunkUnits;
    private int _nextUnit;
    private int _generation;
    private int _pending;
    private int _sleepingWorkers;
    private int _callerSleeping;
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _failure;

    public WorkerPool(int threadCount)
    {
        if (threadCount < 1)
            throw new ArgumentOutOfRangeException(nameof(threadCount), threadCount, "thread count must be at least 1");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker))
            {
                IsBackground = true,
                Name = $"kiln-worker-{worker}",
            };
            _threads[i].Start();
        }
    }

    public int ThreadCount { get; }

    /// <summary>
    /// Runs <paramref name="work"/> over [0, count) split into ThreadCount contiguous ranges whose
    /// boundaries are multiples of <paramref name="grain"/>; returns when every range is done.
    /// Not re-entrant: one job at a time, from one calling thread.
    /// </summary>
    public void For(int count, IParallelWork work, int grain = 1) => Run(count, work, grain, chunksPerThread: 0);

    /// <summary>
    /// Runs <paramref name="work"/> over [0, count) in chunks (multiples of <paramref name="grain"/>, about
    /// <paramref name="chunksPerThread"/> per thread) that the threads take in turn from a shared counter, so that a
    /// thread slowed down (another process on its core, a vCPU the host runs slower) does less of the work instead of
    /// holding up the others at the end, as ggml's matrix products also do. <paramref name="work"/> may be called
    /// several times per worker, with ranges in any order; each item is done exactly once. Same contract otherwise.
    /// </summary>
    public void ForDynamic(int count, IParallelWork work, int grain = 1, int chunksPerThread = 8)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunksPerThread, 1);
        Run(count, work, grain, chunksPerThread);
    }

    private void Run(int count, IParallelWork work, int grain, int chunksPerThread)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (count <= 0)
            return;
        if (grain < 1)
            grain = 1;
        int units = (count + grain - 1) / grain;
        if (_threads.Length == 0 || units == 1)
        {
            work.Execute(0, count, 0);
            return;
        }

        _work = work;
        _count = count;
        _grain = grain;
        _chunkUnits = chunksPerThread == 0 ? 0 : Math.Max(1, units / (ThreadCount * chunksPerThread));
        _nextUnit = 0;
        _failure = null;
        Volatile.Write(ref _pending, _threads.Length);
        // Full fence, then the sleeper check: a worker that goes to sleep registers first and then re-reads the
        // generation, so one of the two always sees the other.
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _sleepingWorkers) > 0)
        {
            lock (_gate)
                Monitor.PulseAll(_gate);
        }

        try
        {
            RunShare(0);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
        }
        WaitForWorkers();
        _work = null;
        _failure?.Throw();
    }

    private void WaitForWorkers()
    {
        long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
        int spins = 0;
        while (Volatile.Read(ref _pending) != 0)
        {
            if (System.Diagnostics.Stopwatch.GetTimestamp() < deadline)
            {
                Pause(ref spins);
                continue;
            }
            lock (_gate)
            {
                Interlocked.Exchange(ref _callerSleeping, 1);
                while (Volatile.Read(ref _pending) != 0)
                    Monitor.Wait(_gate);
                Volatile.Write(ref _callerSleeping, 0);
            }
        }
    }

    /// <summary>
    /// A short busy wait that yields the core now and then: when the machine has more runnable threads than cores,
    /// the thread being waited for may need this one's core to make progress.
    /// </summary>
    private static void Pause(ref int spins)
    {
        if ((++spins & 63) == 0)
            Thread.Yield();
        else
            Thread.SpinWait(8);
    }

    private void RunShare(int worker)
    {
        int units = (_count + _grain - 1) / _grain;
        if (_chunkUnits > 0)
        {
            int chunk = _chunkUnits;
            int first;
            while ((first = Interlocked.Add(ref _nextUnit, chunk) - chunk) < units)
                _work!.Execute(first * _grain, (int)Math.Min(_count, (long)(first + chunk) * _grain), worker);
            return;
        }
        int firstUnit = (int)((long)units * worker / ThreadCount);
        int lastUnit = (int)((long)units * (worker + 1) / ThreadCount);
        int begin = firstUnit * _grain;
        int end = Math.Min(_count, lastUnit * _grain);
        if (begin < end)
            _work!.Execute(begin, end, worker);
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            seen = WaitForGeneration(seen);
            if (_stopping)
                return;
            try
            {
                RunShare(worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            }
            if (Interlocked.Decrement(ref _pending) == 0 && Volatile.Read(ref _callerSleeping) != 0)
            {
                lock (_gate)
                    Monitor.PulseAll(_gate);
            }
        }
    }

    private int WaitForGeneration(int seen)
    {
        long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
        int current, spins = 0;
        while ((current = Volatile.Read(ref _generation)) == seen && !_stopping)
        {
            if (System.Diagnostics.Stopwatch.GetTimestamp() < deadline)
            {
                Pause(ref spins);
                continue;
            }
            lock (_gate)
            {
                Interlocked.Increment(ref _sleepingWorkers);
                while (Volatile.Read(ref _generation) == seen && !_stopping)
                    Monitor.Wait(_gate);
                Interlocked.Decrement(ref _sleepingWorkers);
            }
        }
        return current;
    }

    /// <summary>Physical cores of this machine (Linux: distinct core ids in /proc/cpuinfo), else logical processors.</summary>
    public static int DefaultThreadCount()
    {
        try
        {
            if (OperatingSystem.IsLinux() && File.Exists("/proc/cpuinfo"))
            {
                var cores = new HashSet<(string, string)>();
                string physical = "0";
                foreach (string line in File.ReadLines("/proc/cpuinfo"))
                {
                    int colon = line.IndexOf(':');
                    if (colon < 0)
                        continue;
                    string key = line[..colon].Trim();
                    string value = line[(colon + 1)..].Trim();
                    if (key == "physical id")
                        physical = value;
                    else if (key == "core id")
                        cores.Add((physical, value));
                }
                if (cores.Count > 0)
                    return Math.Min(cores.Count, Environment.ProcessorCount);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return Environment.ProcessorCount;
    }

    public void Dispose()
    {
        if (_stopping)
            return;
        _stopping = true;
        lock (_gate)
            Monitor.PulseAll(_gate);
        foreach (var t in _threads)
            t.Join();
    }
}
