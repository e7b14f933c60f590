using System.Text.Json;

namespace Kiln.Cli.Tests;

public sealed class PlanCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-plan-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Machine = ["--ranks", "64", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300"];

    public static TheoryData<string[], string> BadInvocations() => new()
    {
        { ["plan", "--preset", "llama2-7b", "--ranks", "0", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300"], "--ranks 0 must be at least 1" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "-80", "--bandwidth", "300", "--flops", "300"], "--mem-per-rank -80 must be a positive number" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "0", "--flops", "300"], "--bandwidth 0 must be a positive number" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "-1"], "--flops -1 must be a positive number" },
        { ["plan", "--preset", "gpt-9", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300"], "unknown preset 'gpt-9' (known: gpt2-small" },
        { ["plan", "--model", "nowhere/config.json", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300"], "config file not found: nowhere/config.json" },
        { ["plan", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300"], "give the model with --model CONFIG.json or --preset NAME" },
        { ["plan", "--model", "a.json", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300"], "not both" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300", "--seq", "5000"], "--seq 5000 must be between 1 and the model's context of 4096" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300", "--batch", "0"], "--batch 0 must be at least 1" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300", "--efficiency", "2"], "--efficiency 2 must be above 0 and at most 1" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300", "--recompute", "some"], "--recompute 'some' is not one of" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300", "--schedule", "zb"], "--schedule 'zb' is not one of gpipe, 1f1b" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300", "--tp", "3"], "no layout matches" },
        { ["plan", "--preset", "llama2-7b", "--ranks", "8", "--mem-per-rank", "80", "--bandwidth", "300", "--flops", "300", "--top", "0"], "--top 0 must be at least 1" },
    };

    [Theory]
    [MemberData(nameof(BadInvocations))]
    public void BadInputIsOneErrorLine(string[] args, string message)
    {
        var r = KilnRunner.Run(args);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Equal("", r.Stdout);
        string line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("kiln: error: ", line);
        Assert.Contains(message, line);
    }

    [Fact]
    public void AMissingRequiredFlagIsAUsageError()
    {
        var r = KilnRunner.Run("plan", "--preset", "llama2-7b", "--ranks", "8");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--mem-per-rank", r.Stderr);
    }

    [Fact]
    public void PrintsTheBestPlansAndTheRejectionsByReason()
    {
        var r = KilnRunner.Run(["plan", "--preset", "llama2-7b", .. Machine, "--batch", "1024", "--seq", "4096", "--top", "3"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Stderr);
        Assert.Contains("6,738,415,616 parameters", r.Stdout);
        Assert.Contains("4,194,304 tokens", r.Stdout);
        string[] lines = r.Stdout.Split('\n');
        int header = Array.FindIndex(lines, l => l.StartsWith("#  dp"));
        Assert.True(header > 0, r.Stdout);
        Assert.StartsWith("1 ", lines[header + 1]);
        Assert.StartsWith("3 ", lines[header + 3]);
        Assert.Equal("", lines[header + 4].Trim());
        // fp32 Adam states of 7B are 108 GB: plain data parallelism cannot fit 80 GB
        Assert.Contains("out of memory, e.g. dp 64 tp 1 pp 1 zero 0", r.Stdout);
        Assert.Contains("heads not divisible by tp", r.Stdout);
        Assert.Contains("layers not divisible by pp", r.Stdout);
    }

    [Fact]
    public void JsonHoldsTheTopPlansFastestFirst()
    {
        string config = Path.Combine(_dir, "tiny.json");
        File.WriteAllText(config, """{"family":"gpt2","layers":4,"dim":128,"heads":4,"vocab":68,"context":64}""");
        var r = KilnRunner.Run("plan", "--model", config, "--ranks", "4", "--mem-per-rank", "1", "--bandwidth", "5", "--flops", "0.05",
            "--efficiency", "1", "--latency-us", "2", "--batch", "8", "--seq", "64", "--top", "4", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Equal("tiny.json", root.GetProperty("model").GetString());
        Assert.Equal(512, root.GetProperty("tokens_per_step").GetInt64());
        var plans = root.GetProperty("plans").EnumerateArray().ToArray();
        Assert.Equal(4, plans.Length);
        double previous = 0;
        foreach (var p in plans)
        {
            Assert.Equal(4, p.GetProperty("dp").GetInt32() * p.GetProperty("tp").GetInt32() * p.GetProperty("pp").GetInt32());
            double step = p.GetProperty("step_seconds").GetDouble();
            Assert.True(step >= previous);
            previous = step;
            Assert.True(p.GetProperty("memory_bytes").GetDouble() <= 1e9);
            Assert.Equal(512 / step, p.GetProperty("tokens_per_second").GetDouble(), 6);
        }
        Assert.True(root.GetProperty("considered").GetInt32() >= root.GetProperty("fitting").GetInt32());
    }
}
