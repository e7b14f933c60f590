using System.Diagnostics;

namespace Kiln.Server;

/// <summary>Per-request bookkeeping for the log line and the latency histograms.</summary>
internal sealed class RequestTrace(ServerMetrics metrics)
{
    private readonly long _start = Stopwatch.GetTimestamp();
    private long _lastToken;

    public string Id { get; set; } = "-";
    public int PromptTokens { get; set; }
    public int CompletionTokens { get; private set; }
    public double? TimeToFirstToken { get; private set; }

    public double Elapsed => Stopwatch.GetElapsedTime(_start).TotalSeconds;

    /// <summary>Records <paramref name="count"/> tokens arriving now (several at once share the gap since the last).</summary>
    public void TokensArrived(int count)
    {
        if (count <= 0)
            return;
        long now = Stopwatch.GetTimestamp();
        lock (this)
        {
            CompletionTokens += count;
            if (TimeToFirstToken is null)
            {
                TimeToFirstToken = Stopwatch.GetElapsedTime(_start, now).TotalSeconds;
                metrics.TimeToFirstToken.Observe(TimeToFirstToken.Value);
            }
            else
            {
                double gap = Stopwatch.GetElapsedTime(_lastToken, now).TotalSeconds / count;
                for (int i = 0; i < count; i++)
                    metrics.InterTokenLatency.Observe(gap);
            }
            _lastToken = now;
        }
    }
}
