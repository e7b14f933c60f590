namespace Kiln.Cli.Commands;

/// <summary>
/// What <c>kiln loadtest</c> sends: R requests over C connections, each P prompt tokens and G generated tokens, after
/// <see cref="Warmup"/> unmeasured ones of the same shape.
/// </summary>
internal sealed record LoadTestSettings
{
    public required Uri Url { get; init; }
    public int Concurrency { get; init; } = 1;
    public int Requests { get; init; } = 8;
    public int Warmup { get; init; }
    public int PromptTokens { get; init; } = 32;
    public int MaxTokens { get; init; } = 32;
    public bool Stream { get; init; }
    public string? ApiKey { get; init; }
    public string? Model { get; init; }
}
