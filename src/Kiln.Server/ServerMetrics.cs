using System.Collections.Concurrent;
using System.Text;
using Kiln.Serving;

namespace Kiln.Server;

/// <summary>The server's own counters and latency histograms, and the Prometheus text of them plus the engine's.</summary>
internal sealed class ServerMetrics
{
    private static readonly double[] LatencyBounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly ConcurrentDictionary<(string Path, int Status), long> _requests = new();

    public LatencyHistogram TimeToFirstToken { get; } = new("kiln_time_to_first_token_seconds", "Time from request arrival to the first generated token.", LatencyBounds);

    public LatencyHistogram InterTokenLatency { get; } = new("kiln_inter_token_latency_seconds", "Time between successive generated tokens of a request.", LatencyBounds);

    public LatencyHistogram RequestDuration { get; } = new("kiln_request_duration_seconds", "Time from request arrival to its last byte.", LatencyBounds);

    public void CountRequest(string path, int status) => _requests.AddOrUpdate((path, status), 1, (_, n) => n + 1);

    public string Render(EngineMetrics? engine)
    {
        var text = new StringBuilder();
        if (engine is not null)
        {
            Gauge(text, "kiln_requests_running", "Sequences the engine is generating.", engine.RunningSequences);
            Gauge(text, "kiln_requests_waiting", "Sequences waiting for admission.", engine.WaitingSequences);
            Gauge(text, "kiln_kv_blocks_used", "KV cache blocks in use.", engine.KvBlocksUsed);
            Gauge(text, "kiln_kv_blocks_total", "KV cache blocks in the pool.", engine.KvBlocksTotal);
            Counter(text, "kiln_prefix_cache_queries_total", "Prompt blocks looked up in the prefix cache.", engine.PrefixCacheQueries);
            Counter(text, "kiln_prefix_cache_hits_total", "Prompt blocks found in the prefix cache.", engine.PrefixCacheHits);
            Counter(text, "kiln_prompt_tokens_total", "Prompt tokens processed.", engine.PromptTokens);
            Counter(text, "kiln_generation_tokens_total", "Tokens generated.", engine.GeneratedTokens);
            Counter(text, "kiln_preemptions_total", "Sequences preempted for lack of KV blocks.", engine.Preemptions);
        }
        text.Append("# HELP kiln_http_requests_total HTTP requests by path and status.\n# TYPE kiln_http_requests_total counter\n");
        foreach (var ((path, status), count) in _requests.OrderBy(kv => kv.Key.Path, StringComparer.Ordinal).ThenBy(kv => kv.Key.Status))
            text.Append("kiln_http_requests_total{path=\"").Append(path).Append("\",status=\"").Append(status).Append("\"} ").Append(count).Append('\n');
        TimeToFirstToken.WriteTo(text);
        InterTokenLatency.WriteTo(text);
        RequestDuration.WriteTo(text);
        return text.ToString();
    }

    private static void Gauge(StringBuilder text, string name, string help, long value) =>
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" gauge\n").Append(name).Append(' ').Append(value).Append('\n');

    private static void Counter(StringBuilder text, string name, string help, long value) =>
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" counter\n").Append(name).Append(' ').Append(value).Append('\n');
}
