using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Kiln.Cli.Commands;

/// <summary>
/// Drives an OpenAI-compatible server (Kiln's or llama.cpp's) with concurrent /v1/completions requests and measures
/// what clients see. Prompts are exactly P tokens when the server has /tokenize (sent as token ids), otherwise about
/// P words; <c>ignore_eos</c> asks for exactly G tokens. Each request gets its own prompt, and each run its own
/// prompts, so that no two requests share a prefix-cache hit, not even with a run before this one on the same server.
/// Warm-up requests, made the same way, go first and are not measured.
/// </summary>
internal static class LoadTestRunner
{
    private const string Words = " the cat sat on a warm mat and looked at the old dog who slept by the door";

    public static async Task<LoadTestReport> RunAsync(LoadTestSettings settings, HttpClient http, CancellationToken cancellationToken)
    {
        if (settings.ApiKey is not null)
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", settings.ApiKey);
        int next = -1;
        int run = Random.Shared.Next();

        // Prompts are made (tokenized) before the clock starts, so that the wall time is the completions' alone.
        var prompts = new object[settings.Warmup + settings.Requests];
        await Parallel.ForEachAsync(Enumerable.Range(0, prompts.Length), new ParallelOptions { MaxDegreeOfParallelism = settings.Concurrency, CancellationToken = cancellationToken },
            async (i, token) => prompts[i] = await PromptAsync(http, settings, run, i, token).ConfigureAwait(false)).ConfigureAwait(false);

        // Untimed requests first, one at a time (vLLM's benchmark does the same): they show at once whether the
        // server answers at all, and they take the client's own first-call costs (JIT, connection set-up) out of
        // the measured window.
        for (int i = 0; i < settings.Warmup; i++)
        {
            try
            {
                await SendAsync(http, settings, prompts[i], cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpRequestException or JsonException or InvalidDataException or TaskCanceledException)
            {
                throw new LoadTestFailedException($"the warm-up request failed: {e.Message}", e);
            }
        }

        // Every figure of the report is derived from these, one per measured request.
        var traces = new List<LoadTestRequestTrace>();
        DateTime startedAt = DateTime.UtcNow;
        var wall = Stopwatch.StartNew();

        async Task Worker()
        {
            while (true)
            {
                int index = Interlocked.Increment(ref next);
                if (index >= settings.Requests)
                    return;
                double start = wall.Elapsed.TotalSeconds;
                LoadTestRequestTrace trace;
                try
                {
                    var result = await SendAsync(http, settings, prompts[settings.Warmup + index], cancellationToken).ConfigureAwait(false);
                    trace = new LoadTestRequestTrace(index, start, result.TimeToFirstToken, result.Arrivals, result.Latency, result.Tokens, null);
                }
                catch (Exception e) when (e is HttpRequestException or JsonException or InvalidDataException or TaskCanceledException)
                {
                    trace = new LoadTestRequestTrace(index, start, null, [], wall.Elapsed.TotalSeconds - start, 0, e.Message);
                }
                lock (traces)
                    traces.Add(trace);
            }
        }

        await Task.WhenAll(Enumerable.Range(0, settings.Concurrency).Select(_ => Task.Run(Worker, cancellationToken))).ConfigureAwait(false);
        wall.Stop();
        var ordered = traces.OrderBy(t => t.Index).ToArray();
        var answered = ordered.Where(t => t.Error is null).ToArray();
        var errors = ordered.Select(t => t.Error).OfType<string>().ToArray();
        return new LoadTestReport
        {
            Requests = settings.Requests,
            Errors = errors.Length,
            ErrorSamples = errors.Distinct().Take(5).ToArray(),
            WallSeconds = wall.Elapsed.TotalSeconds,
            GeneratedTokens = answered.Sum(t => (long)t.Tokens),
            TimeToFirstToken = answered.Where(t => t.FirstToken is not null).Select(t => t.FirstToken!.Value).ToArray(),
            InterTokenLatency = answered.SelectMany(t => Gaps(t, settings.Stream)).ToArray(),
            Latency = answered.Select(t => t.Latency).ToArray(),
            StartedAt = startedAt,
            Traces = ordered,
        };
    }

    /// <summary>
    /// A request's inter-token gaps: between its streamed chunks, or without streaming (the first token seen with the
    /// last) the mean gap, all that can be known, once per token after the first.
    /// </summary>
    private static IEnumerable<double> Gaps(LoadTestRequestTrace trace, bool streamed)
    {
        if (!streamed)
            return trace.Tokens > 1 ? Enumerable.Repeat(trace.Latency / trace.Tokens, trace.Tokens - 1) : [];
        return trace.Arrivals.Skip(1).Zip(trace.Arrivals, (later, earlier) => later - earlier);
    }

    private static async Task<object> PromptAsync(HttpClient http, LoadTestSettings settings, int run, int index, CancellationToken cancellationToken)
    {
        // A distinct opening per request keeps prefix caches from turning the test into a cache benchmark.
        var text = new StringBuilder($"Request {run:x8}-{index}:");
        while (text.Length < settings.PromptTokens * 8)
            text.Append(Words);
        try
        {
            using var response = await http.PostAsync("tokenize", Json(new { content = text.ToString() }), cancellationToken).ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
            {
                using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
                int[] ids = document.RootElement.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
                if (ids.Length >= settings.PromptTokens)
                    return ids[..settings.PromptTokens];
            }
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            // No usable /tokenize: fall back to words.
        }
        return string.Join(' ', text.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(settings.PromptTokens));
    }

    private sealed record Outcome(double Latency, double? TimeToFirstToken, IReadOnlyList<double> Arrivals, int Tokens);

    private static async Task<Outcome> SendAsync(HttpClient http, LoadTestSettings settings, object prompt, CancellationToken cancellationToken)
    {
        var body = new Dictionary<string, object?>
        {
            ["prompt"] = prompt,
            ["max_tokens"] = settings.MaxTokens,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
            ["stream"] = settings.Stream,
        };
        if (settings.Model is not null)
            body["model"] = settings.Model;
        if (settings.Stream)
            body["stream_options"] = new { include_usage = true };
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = Json(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}");
        if (!settings.Stream)
        {
            using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
            double total = clock.Elapsed.TotalSeconds;
            int tokens = document.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
            return new Outcome(total, total, [total], tokens);
        }

        using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        using var reader = new StreamReader(stream);
        var arrivals = new List<double>();
        int? usageTokens = null;
        while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal))
                continue;
            string data = line[6..];
            if (data == "[DONE]")
                break;
            using var chunk = JsonDocument.Parse(data);
            if (chunk.RootElement.TryGetProperty("error", out JsonElement error))
                throw new InvalidDataException($"stream error: {error}");
            if (chunk.RootElement.TryGetProperty("usage", out JsonElement usage) && usage.ValueKind == JsonValueKind.Object)
                usageTokens = usage.GetProperty("completion_tokens").GetInt32();
            if (chunk.RootElement.TryGetProperty("choices", out JsonElement choices) && choices.GetArrayLength() > 0
                && choices[0].TryGetProperty("text", out JsonElement text) && !string.IsNullOrEmpty(text.GetString()))
            {
                arrivals.Add(clock.Elapsed.TotalSeconds);
            }
        }
        return new Outcome(clock.Elapsed.TotalSeconds, arrivals.Count > 0 ? arrivals[0] : null, arrivals, usageTokens ?? arrivals.Count);
    }

    private static StringContent Json(object value) => new(JsonSerializer.Serialize(value), Encoding.UTF8, "application/json");
}
