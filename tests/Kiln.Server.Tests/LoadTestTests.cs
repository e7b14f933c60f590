using Kiln.Cli.Commands;

namespace Kiln.Server.Tests;

/// <summary>kiln loadtest against the real server over the scripted engine, whose timing is known.</summary>
public class LoadTestTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task CountsTokensAndMeasuresLatencies(bool stream)
    {
        var engine = new ScriptedEngine { TokenDelay = TimeSpan.FromMilliseconds(5) };
        await using var fixture = await ServerFixture.StartAsync(engine);
        var settings = new LoadTestSettings { Url = fixture.Server.Url, Concurrency = 4, Requests = 10, PromptTokens = 12, MaxTokens = 6, Stream = stream };
        LoadTestReport report = await LoadTestRunner.RunAsync(settings, fixture.Http, CancellationToken.None);
        Assert.Equal(0, report.Errors);
        Assert.Equal(60, report.GeneratedTokens);
        Assert.Equal(10, report.Latency.Count);
        Assert.Equal(10, report.TimeToFirstToken.Count);
        Assert.Equal(50, report.InterTokenLatency.Count);
        // Every token takes at least the engine's 5 ms step.
        Assert.True(LoadTestReport.Percentile(report.InterTokenLatency, 50) >= 0.004);
        Assert.True(report.TokensPerSecond > 0);
        Assert.Contains("in=12 out=6", fixture.Log.ToString());
    }

    [Fact]
    public async Task TracesHoldEachRequestsArrivalsAndAgreeWithThePercentiles()
    {
        var engine = new ScriptedEngine { TokenDelay = TimeSpan.FromMilliseconds(3) };
        await using var fixture = await ServerFixture.StartAsync(engine);
        var settings = new LoadTestSettings { Url = fixture.Server.Url, Concurrency = 3, Requests = 7, PromptTokens = 12, MaxTokens = 5, Stream = true };
        LoadTestReport report = await LoadTestRunner.RunAsync(settings, fixture.Http, CancellationToken.None);
        Assert.Equal(0, report.Errors);
        Assert.Equal(Enumerable.Range(0, 7), report.Traces.Select(t => t.Index));
        var gaps = new List<double>();
        foreach (var t in report.Traces)
        {
            Assert.Null(t.Error);
            Assert.Equal(5, t.Tokens);
            Assert.Equal(5, t.Arrivals.Count);
            Assert.Equal(t.FirstToken, t.Arrivals[0]);
            Assert.InRange(t.Start, 0, report.WallSeconds);
            Assert.InRange(t.Start + t.Latency, t.Start, report.WallSeconds);
            for (int i = 1; i < t.Arrivals.Count; i++)
            {
                Assert.True(t.Arrivals[i] >= t.Arrivals[i - 1]);
                gaps.Add(t.Arrivals[i] - t.Arrivals[i - 1]);
            }
            Assert.True(t.Arrivals[^1] <= t.Latency);
        }
        Assert.Equal(report.InterTokenLatency.Order(), gaps.Order());
        // Three connections: the fourth request cannot start before one of the first three has ended.
        double firstEnd = report.Traces.Take(3).Min(t => t.Start + t.Latency);
        Assert.True(report.Traces[3].Start >= firstEnd - 1e-3);
    }

    [Fact]
    public async Task TheTraceFlagWritesEveryRequestAsJson()
    {
        var engine = new ScriptedEngine { TokenDelay = TimeSpan.FromMilliseconds(2) };
        await using var fixture = await ServerFixture.StartAsync(engine);
        string file = Path.Combine(Path.GetTempPath(), $"kiln-trace-{Guid.NewGuid():N}.json");
        try
        {
            var output = new StringWriter();
            var error = new StringWriter();
            string[] args = ["loadtest", "--url", fixture.Server.Url.ToString(), "-c", "2", "-r", "3", "-p", "8", "-n", "3", "--stream", "--trace", file];
            int code = await Task.Run(() => Kiln.Cli.CliApp.Run(args, new StringReader(""), output, error));
            Assert.True(code == 0, error.ToString());
            using var trace = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file));
            var root = trace.RootElement;
            Assert.Equal(2, root.GetProperty("concurrency").GetInt32());
            Assert.True(DateTime.TryParse(root.GetProperty("started_at").GetString(), out _));
            var requests = root.GetProperty("requests").EnumerateArray().ToArray();
            Assert.Equal([0, 1, 2], requests.Select(r => r.GetProperty("index").GetInt32()));
            foreach (var r in requests)
            {
                Assert.Equal(3, r.GetProperty("tokens").GetInt32());
                var arrivals = r.GetProperty("arrivals").EnumerateArray().Select(a => a.GetDouble()).ToArray();
                Assert.Equal(3, arrivals.Length);
                Assert.Equal(r.GetProperty("ttft").GetDouble(), arrivals[0]);
                Assert.Equal(System.Text.Json.JsonValueKind.Null, r.GetProperty("error").ValueKind);
            }
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task NoTwoRequestsShareAPromptEvenAcrossRuns()
    {
        // A second run on the same server must not find the first run's prompts in the prefix cache: that would
        // turn the throughput figure into a cache benchmark.
        var prompts = new System.Collections.Concurrent.ConcurrentBag<string>();
        var engine = new ScriptedEngine { Script = request => { prompts.Add(string.Join(',', request.Prompt)); return [1]; } };
        await using var fixture = await ServerFixture.StartAsync(engine);
        var settings = new LoadTestSettings { Url = fixture.Server.Url, Concurrency = 2, Requests = 4, PromptTokens = 32, MaxTokens = 1 };
        for (int run = 0; run < 2; run++)
            Assert.Equal(0, (await LoadTestRunner.RunAsync(settings, fixture.Http, CancellationToken.None)).Errors);
        Assert.Equal(8, prompts.Count);
        Assert.Equal(8, prompts.Distinct().Count());
    }

    [Fact]
    public async Task WarmupRequestsAreSentButNotMeasured()
    {
        var prompts = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var engine = new ScriptedEngine
        {
            TokenDelay = TimeSpan.FromMilliseconds(2),
            Script = request =>
            {
                prompts.Enqueue(string.Join(',', request.Prompt));
                return null!; // no script: the engine's own tokens, max_tokens of them
            },
        };
        await using var fixture = await ServerFixture.StartAsync(engine);
        var settings = new LoadTestSettings { Url = fixture.Server.Url, Concurrency = 3, Requests = 5, Warmup = 2, PromptTokens = 32, MaxTokens = 3, Stream = true };
        LoadTestReport report = await LoadTestRunner.RunAsync(settings, fixture.Http, CancellationToken.None);
        Assert.Equal(0, report.Errors);
        Assert.Equal(5, report.Latency.Count);
        Assert.Equal(15, report.GeneratedTokens);
        Assert.Equal(7, prompts.Count);
        Assert.Equal(7, prompts.Distinct().Count());
    }

    [Fact]
    public async Task AFailedWarmupStopsTheRunWithItsError()
    {
        int seen = 0;
        var engine = new ScriptedEngine { Script = _ => { Interlocked.Increment(ref seen); return [1]; } };
        await using var fixture = await ServerFixture.StartAsync(engine, apiKey: "k");
        using var anonymous = new HttpClient { BaseAddress = fixture.Server.Url };
        var settings = new LoadTestSettings { Url = fixture.Server.Url, Requests = 4, Warmup = 1, PromptTokens = 4, MaxTokens = 2 };
        var e = await Assert.ThrowsAsync<LoadTestFailedException>(() => LoadTestRunner.RunAsync(settings, anonymous, CancellationToken.None));
        Assert.Contains("warm-up", e.Message);
        Assert.Contains("401", e.Message);
        Assert.Equal(0, seen);
        Assert.DoesNotContain("/v1/completions 200", fixture.Log.ToString());
    }

    [Fact]
    public async Task ErrorsAreCountedNotThrown()
    {
        await using var fixture = await ServerFixture.StartAsync(apiKey: "k");
        using var anonymous = new HttpClient { BaseAddress = fixture.Server.Url };
        var settings = new LoadTestSettings { Url = fixture.Server.Url, Requests = 3, PromptTokens = 4, MaxTokens = 2 };
        LoadTestReport report = await LoadTestRunner.RunAsync(settings, anonymous, CancellationToken.None);
        Assert.Equal(3, report.Errors);
        Assert.Contains("401", report.ErrorSamples[0]);
        Assert.All(report.Traces, t => Assert.Contains("401", t.Error));
        Assert.Equal(3, report.Traces.Count);
    }

    [Fact]
    public void PercentilesAreNearestRank()
    {
        double[] values = [5, 1, 4, 2, 3];
        Assert.Equal(3, LoadTestReport.Percentile(values, 50));
        Assert.Equal(5, LoadTestReport.Percentile(values, 90));
        Assert.Equal(1, LoadTestReport.Percentile(values, 1));
        Assert.True(double.IsNaN(LoadTestReport.Percentile([], 50)));
    }
}
