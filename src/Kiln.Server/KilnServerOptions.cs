namespace Kiln.Server;

/// <summary>Settings of the HTTP front end (the engine's own settings belong to the engine).</summary>
public sealed record KilnServerOptions
{
    /// <summary>Address to bind; loopback unless told otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="KilnServer.Url"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every endpoint but /health needs <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Largest request body accepted (413 beyond).</summary>
    public long MaxRequestBodyBytes { get; init; } = 4 << 20;

    /// <summary>How long running requests may go on after a shutdown signal before they are cancelled.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Retry-After sent with 429 when the engine's queue is full.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>Where the one-line-per-request log goes (null: nowhere).</summary>
    public TextWriter? Log { get; init; }
}
