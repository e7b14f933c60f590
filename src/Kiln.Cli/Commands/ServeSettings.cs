using Kiln.Formats.Gguf;

namespace Kiln.Cli.Commands;

/// <summary>What <c>kiln serve</c> was asked for: the model, the engine's limits and the HTTP front end's settings.</summary>
internal sealed record ServeSettings
{
    public required string ModelPath { get; init; }
    public string? Alias { get; init; }
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    public string? ApiKey { get; init; }
    public int MaxSequences { get; init; } = 8;
    public int MaxBatchTokens { get; init; } = 512;
    public int MaxPrefillTokens { get; init; } = Kiln.Serving.SchedulerOptions.DefaultMaxPrefillTokens;
    public int ContextLength { get; init; }
    public int KvCacheMb { get; init; }
    public int Threads { get; init; }
    public GgufLoadMode LoadMode { get; init; } = GgufLoadMode.Auto;
    public int MaxWaiting { get; init; } = 64;
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
