using System.Runtime.ExceptionServices;

namespace Kiln.Threading;

/// <summary>
/// Persistent worker threads for the forward pass. The calling thread is worker 0 and takes a share of
/// every job, so a pool of N threads owns N-1 background threads. Wake-up and completion both spin
/// briefly before blocking (ManualResetEventSlim), which keeps the per-op cost in the microseconds
/// when ops come back to back and costs no CPU when the pool is idle. No allocation per dispatch.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private const int SpinCount = 2000;

    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _start;
    private readonly ManualResetEventSlim _done = new(false, SpinCount);
    private IParallelWork? _work;
    private int _count;
    private int _grain;
    private int _pending;
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _failure;

    public WorkerPool(int threadCount)
    {
        if (threadCount < 1)
            throw new ArgumentOutOfRangeException(nameof(threadCount), threadCount, "thread count must be at least 1");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        _start = new ManualResetEventSlim[threadCount - 1];
        // A ManualResetEventSlim allocates its lock object the first time a wait has to block; block once here
        // (1 ms, unset) so that allocation happens now and not in the middle of some later decode step.
        _done.Wait(1);
        for (int i = 0; i < _threads.Length; i++)
        {
            _start[i] = new ManualResetEventSlim(false, SpinCount);
            _start[i].Wait(1);
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
    public void For(int count, IParallelWork work, int grain = 1)
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
        _failure = null;
        _done.Reset();
        Volatile.Write(ref _pending, _threads.Length);
        for (int i = 0; i < _start.Length; i++)
            _start[i].Set();

        try
        {
            RunShare(0);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
        }
        _done.Wait();
        _work = null;
        _failure?.Throw();
    }

    private void RunShare(int worker)
    {
        int units = (_count + _grain - 1) / _grain;
        int firstUnit = (int)((long)units * worker / ThreadCount);
        int lastUnit = (int)((long)units * (worker + 1) / ThreadCount);
        int begin = firstUnit * _grain;
        int end = Math.Min(_count, lastUnit * _grain);
        if (begin < end)
            _work!.Execute(begin, end, worker);
    }

    private void WorkerLoop(int worker)
    {
        var start = _start[worker - 1];
        while (true)
        {
            start.Wait();
            start.Reset();
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
            if (Interlocked.Decrement(ref _pending) == 0)
                _done.Set();
        }
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
        foreach (var e in _start)
            e.Set();
        foreach (var t in _threads)
            t.Join();
        foreach (var e in _start)
            e.Dispose();
        _done.Dispose();
    }
}
