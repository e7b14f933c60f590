namespace Kiln.Serving;

/// <summary>The engine refused a request before starting it.</summary>
public sealed class EngineRejectedException : Exception
{
    public EngineRejectedException(EngineRejection reason, string message) : base(message) => Reason = reason;

    public EngineRejection Reason { get; }
}

/// <summary>Why a request was refused: the HTTP layer maps these to 400 and 429.</summary>
public enum EngineRejection
{
    /// <summary>Prompt (plus at least one generated token) does not fit the context: 400.</summary>
    PromptTooLong,
    /// <summary>The waiting queue is full: 429 with Retry-After.</summary>
    QueueFull,
    /// <summary>The engine is shutting down: 503.</summary>
    ShuttingDown,
}
