using System.Globalization;

namespace Kiln.Cli.Commands;

/// <summary>Figures of one load test: throughput, latency percentiles and errors.</summary>
internal sealed record LoadTestReport
{
    public required int Requests { get; init; }
    public required int Errors { get; init; }
    public required IReadOnlyList<string> ErrorSamples { get; init; }
    public required double WallSeconds { get; init; }
    public required long GeneratedTokens { get; init; }
    public required IReadOnlyList<double> TimeToFirstToken { get; init; }
    public required IReadOnlyList<double> InterTokenLatency { get; init; }
    public required IReadOnlyList<double> Latency { get; init; }

    /// <summary>When the measured window began (UTC); the traces' times count from it.</summary>
    public DateTime StartedAt { get; init; }

    /// <summary>One entry per measured request, in request order (<c>kiln loadtest --trace</c>).</summary>
    public IReadOnlyList<LoadTestRequestTrace> Traces { get; init; } = [];

    public double TokensPerSecond => WallSeconds > 0 ? GeneratedTokens / WallSeconds : 0;

    public double RequestsPerSecond => WallSeconds > 0 ? (Requests - Errors) / WallSeconds : 0;

    /// <summary>Nearest-rank percentile (<paramref name="p"/> in 0..100) of <paramref name="values"/>; NaN when empty.</summary>
    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0)
            return double.NaN;
        double[] sorted = values.Order().ToArray();
        int rank = (int)Math.Ceiling(p / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    public void WriteTo(TextWriter output)
    {
        string Ms(double seconds) => double.IsNaN(seconds) ? "-" : (seconds * 1000).ToString("F1", CultureInfo.InvariantCulture) + " ms";
        string Row(string name, IReadOnlyList<double> v) =>
            $"{name,-22} p50 {Ms(Percentile(v, 50)),10}   p90 {Ms(Percentile(v, 90)),10}   p99 {Ms(Percentile(v, 99)),10}";
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"requests               {Requests - Errors} ok, {Errors} failed in {WallSeconds:F2} s"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"throughput             {TokensPerSecond:F2} generated tokens/s, {RequestsPerSecond:F3} requests/s ({GeneratedTokens} tokens)"));
        output.WriteLine(Row("time to first token", TimeToFirstToken));
        output.WriteLine(Row("inter-token latency", InterTokenLatency));
        output.WriteLine(Row("request latency", Latency));
        foreach (string error in ErrorSamples)
            output.WriteLine($"error: {error}");
    }
}
