using System.CommandLine;
using System.Text.Json;

namespace Kiln.Cli.Commands;

/// <summary>kiln loadtest: concurrent completion requests against an OpenAI-compatible server; throughput, TTFT and inter-token latency.</summary>
internal static class LoadTestCommand
{
    public static Command Create(CliIO io)
    {
        var url = new Option<string>("--url") { Description = "Server address, e.g. http://127.0.0.1:8080", Required = true };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Requests in flight at once", DefaultValueFactory = _ => 1 };
        var requests = new Option<int>("--requests", "-r") { Description = "Requests in all", DefaultValueFactory = _ => 8 };
        var promptTokens = new Option<int>("--prompt-tokens", "-p") { Description = "Prompt tokens per request", DefaultValueFactory = _ => 32 };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Tokens generated per request (end-of-generation ignored)", DefaultValueFactory = _ => 32 };
        var stream = new Option<bool>("--stream") { Description = "Stream the responses (needed for real TTFT and inter-token latency)" };
        var apiKey = new Option<string?>("--api-key") { Description = "Bearer key for the server" };
        var model = new Option<string?>("--model", "-m") { Description = "Model name to send (default: none, the server's)" };
        var json = new Option<bool>("--json") { Description = "Print the figures as JSON" };
        var trace = new Option<FileInfo?>("--trace") { Description = "Also write every measured request's send time, token arrival times and outcome to this JSON file" };
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured requests of the same shape sent one at a time first; if one fails, nothing is measured", DefaultValueFactory = _ => 1 };

        var command = new Command("loadtest", "Load-test an OpenAI-compatible server: generated tokens/s, requests/s, TTFT and inter-token latency percentiles");
        foreach (Option o in new Option[] { url, concurrency, requests, promptTokens, maxTokens, stream, warmup, apiKey, model, json, trace })
            command.Options.Add(o);

        command.SetAction(async (r, cancellation) =>
        {
            if (!Uri.TryCreate(r.GetValue(url), UriKind.Absolute, out Uri? address) || address.Scheme is not ("http" or "https"))
                throw new CliException($"--url {r.GetValue(url)} is not an http(s) address");
            // Checked before the run, not after it: a long run should not end in a path error.
            if (r.GetValue(trace) is { } traceTarget && (Directory.Exists(traceTarget.FullName) || traceTarget.Directory is not { Exists: true }))
                throw new CliException($"--trace {traceTarget.FullName}: not a file in an existing directory");
            var settings = new LoadTestSettings
            {
                Url = address,
                Concurrency = Check(r.GetValue(concurrency), 1, 4096, "--concurrency"),
                Requests = Check(r.GetValue(requests), 1, 1_000_000, "--requests"),
                Warmup = Check(r.GetValue(warmup), 0, 1000, "--warmup"),
                PromptTokens = Check(r.GetValue(promptTokens), 1, 1 << 20, "--prompt-tokens"),
                MaxTokens = Check(r.GetValue(maxTokens), 1, 1 << 20, "--max-tokens"),
                Stream = r.GetValue(stream),
                ApiKey = r.GetValue(apiKey),
                Model = r.GetValue(model),
            };
            using var http = new HttpClient { BaseAddress = new Uri(address.ToString().TrimEnd('/') + "/"), Timeout = TimeSpan.FromMinutes(30) };
            // A failed warm-up (LoadTestFailedException) ends the command with its message and exit code 1.
            LoadTestReport report = await LoadTestRunner.RunAsync(settings, http, cancellation).ConfigureAwait(false);
            if (r.GetValue(trace) is { } traceFile)
                WriteTrace(traceFile, settings, report);
            if (r.GetValue(json))
            {
                io.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    requests = report.Requests,
                    errors = report.Errors,
                    wall_seconds = report.WallSeconds,
                    generated_tokens = report.GeneratedTokens,
                    tokens_per_second = report.TokensPerSecond,
                    requests_per_second = report.RequestsPerSecond,
                    ttft_p50 = Finite(LoadTestReport.Percentile(report.TimeToFirstToken, 50)),
                    ttft_p90 = Finite(LoadTestReport.Percentile(report.TimeToFirstToken, 90)),
                    ttft_p99 = Finite(LoadTestReport.Percentile(report.TimeToFirstToken, 99)),
                    itl_p50 = Finite(LoadTestReport.Percentile(report.InterTokenLatency, 50)),
                    itl_p90 = Finite(LoadTestReport.Percentile(report.InterTokenLatency, 90)),
                    itl_p99 = Finite(LoadTestReport.Percentile(report.InterTokenLatency, 99)),
                    error_samples = report.ErrorSamples,
                }));
            }
            else
            {
                io.Out.WriteLine($"kiln loadtest: {settings.Requests} requests, concurrency {settings.Concurrency}, {settings.PromptTokens} prompt tokens, {settings.MaxTokens} generated{(settings.Stream ? ", streamed" : "")}");
                report.WriteTo(io.Out);
            }
            return report.Errors == 0 ? 0 : 1;
        });
        return command;
    }

    private static void WriteTrace(FileInfo file, LoadTestSettings settings, LoadTestReport report)
    {
        var document = new
        {
            url = settings.Url.ToString(),
            concurrency = settings.Concurrency,
            prompt_tokens = settings.PromptTokens,
            max_tokens = settings.MaxTokens,
            stream = settings.Stream,
            started_at = report.StartedAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
            wall_seconds = report.WallSeconds,
            requests = report.Traces.Select(t => new
            {
                index = t.Index,
                start = t.Start,
                ttft = t.FirstToken,
                arrivals = t.Arrivals,
                latency = t.Latency,
                tokens = t.Tokens,
                error = t.Error,
            }),
        };
        try
        {
            File.WriteAllText(file.FullName, JsonSerializer.Serialize(document));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"--trace {file.FullName}: {e.Message}");
        }
    }

    private static double? Finite(double value) => double.IsNaN(value) ? null : value;

    private static int Check(int value, int min, int max, string flag) =>
        value >= min && value <= max ? value : throw new CliException($"{flag} {value} is out of range ({min} to {max})");
}
