using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kiln.Threading;

namespace Kiln.Benchmarking;

/// <summary>
/// Measures how fast this machine streams memory into the cores: every worker sums its own contiguous
/// part of a buffer far larger than the last-level cache with 256-bit loads, and a pass's rate is the
/// buffer size over the wall time of the whole parallel sum. Decode speed of a model cannot exceed this
/// rate divided by the weight bytes each token reads.
/// </summary>
public sealed unsafe class ReadBandwidthProbe : IParallelWork
{
    /// <summary>The unit of work split between threads; a multiple of every vector width and of a page.</summary>
    private const int ChunkBytes = 16 * 1024;

    private readonly uint* _buffer;
    private readonly uint[] _sums;
    private bool _fill;

    private ReadBandwidthProbe(uint* buffer, int threads)
    {
        _buffer = buffer;
        _sums = new uint[threads * 16];
    }

    /// <summary>Sums a <paramref name="bytes"/>-byte buffer <paramref name="passes"/> times on <paramref name="threads"/> threads.</summary>
    public static ReadBandwidth Measure(int threads, long bytes = 1L << 30, int passes = 7)
    {
        if (threads < 1)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "at least one thread");
        if (bytes < ChunkBytes || bytes % ChunkBytes != 0 || bytes / ChunkBytes > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"a positive multiple of {ChunkBytes} bytes");
        if (passes < 1)
            throw new ArgumentOutOfRangeException(nameof(passes), passes, "at least one pass");

        int chunks = (int)(bytes / ChunkBytes);
        var buffer = (uint*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            using var pool = new WorkerPool(threads);
            var probe = new ReadBandwidthProbe(buffer, threads) { _fill = true };
            // Each worker first touches the part it will read, so the pages exist (and sit near it on NUMA machines).
            pool.For(chunks, probe);
            probe._fill = false;
            pool.For(chunks, probe);

            var rates = new double[passes];
            for (int r = 0; r < passes; r++)
            {
                long start = Stopwatch.GetTimestamp();
                pool.For(chunks, probe);
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                rates[r] = bytes / seconds / 1e9;
            }
            var sorted = (double[])rates.Clone();
            Array.Sort(sorted);
            double median = passes % 2 == 1 ? sorted[passes / 2] : (sorted[passes / 2 - 1] + sorted[passes / 2]) / 2;
            return new ReadBandwidth(bytes, passes, threads, sorted[^1], median, rates);
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void IParallelWork.Execute(int begin, int end, int worker)
    {
        const int perChunk = ChunkBytes / sizeof(uint);
        uint* start = _buffer + (long)begin * perChunk;
        long count = (long)(end - begin) * perChunk;
        if (_fill)
        {
            for (long i = 0; i < count; i++)
                start[i] = (uint)((begin * (long)perChunk + i) & 1023);
            return;
        }
        uint sum = 0;
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(count - done, int.MaxValue / 2 / perChunk * perChunk);
            sum = unchecked(sum + StreamingSum.Sum(new ReadOnlySpan<uint>(start + done, n)));
            done += n;
        }
        // One slot per cache line per worker: the store keeps the sum alive without false sharing.
        _sums[worker * 16] = sum;
    }
}
