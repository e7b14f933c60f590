namespace Kiln.Server;

/// <summary>A request the server refuses: written as OpenAI's <c>{"error":{"message","type","param","code"}}</c> with <see cref="Status"/>.</summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;

    public string Type { get; } = type;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    /// <summary>Seconds for a Retry-After header (429), or null.</summary>
    public int? RetryAfterSeconds { get; init; }

    public static ApiException BadField(string field, string message) => new(400, $"Invalid '{field}': {message}", param: field, code: "invalid_value");
}
