using System.Globalization;
using System.Text;

namespace Kiln.Server;

/// <summary>A Prometheus histogram of durations in seconds with fixed buckets; thread-safe, lock-free.</summary>
internal sealed class LatencyHistogram(string name, string help, double[] bounds)
{
    private readonly long[] _counts = new long[bounds.Length + 1];
    private long _count;
    private long _sumMicroseconds;

    public long Count => Interlocked.Read(ref _count);

    public void Observe(double seconds)
    {
        int bucket = Array.FindIndex(bounds, b => seconds <= b);
        Interlocked.Increment(ref _counts[bucket < 0 ? bounds.Length : bucket]);
        Interlocked.Increment(ref _count);
        Interlocked.Add(ref _sumMicroseconds, (long)(seconds * 1e6));
    }

    public void WriteTo(StringBuilder text)
    {
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(" histogram\n");
        long cumulative = 0;
        for (int i = 0; i < bounds.Length; i++)
        {
            cumulative += Interlocked.Read(ref _counts[i]);
            text.Append(name).Append("_bucket{le=\"").Append(bounds[i].ToString(CultureInfo.InvariantCulture)).Append("\"} ").Append(cumulative).Append('\n');
        }
        cumulative += Interlocked.Read(ref _counts[bounds.Length]);
        text.Append(name).Append("_bucket{le=\"+Inf\"} ").Append(cumulative).Append('\n');
        text.Append(name).Append("_sum ").Append((Interlocked.Read(ref _sumMicroseconds) / 1e6).ToString(CultureInfo.InvariantCulture)).Append('\n');
        text.Append(name).Append("_count ").Append(cumulative).Append('\n');
    }
}
