using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Kiln.Server;

/// <summary>
/// A parsed JSON request body with typed, range-checked field access: a wrong type or an out-of-range value becomes a
/// 400 naming the field; unknown fields are never looked at, so they are ignored.
/// </summary>
internal sealed class RequestBody : IDisposable
{
    private readonly JsonDocument _document;

    private RequestBody(JsonDocument document) => _document = document;

    public JsonElement Root => _document.RootElement;

    public static async Task<RequestBody> ReadAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(request.Body, default, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"The request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw new ApiException(400, "The request body must be a JSON object.", code: "invalid_json");
        }
        return new RequestBody(document);
    }

    public void Dispose() => _document.Dispose();

    public JsonElement? Get(string name) => Root.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string name)
    {
        if (Get(name) is not { } v)
            return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw ApiException.BadField(name, "expected a string.");
    }

    public bool? Bool(string name)
    {
        if (Get(name) is not { } v)
            return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadField(name, "expected a boolean."),
        };
    }

    public double? Number(string name, double min, double max)
    {
        if (Get(name) is not { } v)
            return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw ApiException.BadField(name, "expected a number.");
        if (d < min || d > max)
            throw ApiException.BadField(name, $"{d} is out of range [{min}, {max}].");
        return d;
    }

    public long? Integer(string name, long min, long max)
    {
        if (Get(name) is not { } v)
            return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long n))
            throw ApiException.BadField(name, "expected an integer.");
        if (n < min || n > max)
            throw ApiException.BadField(name, $"{n} is out of range [{min}, {max}].");
        return n;
    }

    /// <summary>A JSON object field (for nested options).</summary>
    public JsonElement? Object(string name)
    {
        if (Get(name) is not { } v)
            return null;
        return v.ValueKind == JsonValueKind.Object ? v : throw ApiException.BadField(name, "expected an object.");
    }
}
