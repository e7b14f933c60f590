using System.Text.Json;
using Kiln.Inference.Sampling;
using Kiln.Serving;
using Kiln.Serving.Constraints;

namespace Kiln.Server;

/// <summary>
/// The generation fields chat and text completions share (sampling, limits, stop, n, response format), read and
/// range-checked from a request body. Defaults are OpenAI's: temperature 1, top_p 1, no penalties, no top-k/min-p.
/// </summary>
internal sealed record GenerationParameters
{
    public const int MaxChoices = 16;
    public const int MaxStopStrings = 4;

    public required SamplerOptions Sampling { get; init; }
    public required int MaxTokens { get; init; }
    public required IReadOnlyList<string> Stop { get; init; }
    public required int Choices { get; init; }
    public required bool Stream { get; init; }
    public required bool IncludeUsage { get; init; }
    public JsonSchemaNode? JsonSchema { get; init; }
    public bool IgnoreEndOfGeneration { get; init; }

    public static GenerationParameters Read(RequestBody body, int contextLength, int promptLength)
    {
        double temperature = body.Number("temperature", 0, 2) ?? 1.0;
        double topP = body.Number("top_p", 0, 1) ?? 1.0;
        long topK = body.Integer("top_k", -1, int.MaxValue) ?? 0;
        double minP = body.Number("min_p", 0, 1) ?? 0;
        double presence = body.Number("presence_penalty", -2, 2) ?? 0;
        double frequency = body.Number("frequency_penalty", -2, 2) ?? 0;
        double repetition = body.Number("repetition_penalty", 0.01, 10) ?? 1;
        long seed = body.Integer("seed", long.MinValue, long.MaxValue) ?? Random.Shared.NextInt64();
        int limit = Math.Max(1, contextLength - promptLength);
        long? maxTokens = body.Integer("max_completion_tokens", 1, contextLength) ?? body.Integer("max_tokens", 1, contextLength);
        int n = (int)(body.Integer("n", 1, MaxChoices) ?? 1);
        bool stream = body.Bool("stream") ?? false;
        bool includeUsage = false;
        if (body.Object("stream_options") is { } streamOptions)
        {
            if (streamOptions.TryGetProperty("include_usage", out JsonElement usage) && usage.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                throw ApiException.BadField("stream_options.include_usage", "expected a boolean.");
            includeUsage = streamOptions.TryGetProperty("include_usage", out usage) && usage.ValueKind == JsonValueKind.True;
        }

        return new GenerationParameters
        {
            Sampling = OpenAiSampling.Create(temperature, topP, (int)topK, minP, presence, frequency, repetition, seed, contextLength),
            MaxTokens = (int)Math.Min(maxTokens ?? limit, limit),
            Stop = ReadStop(body),
            Choices = n,
            Stream = stream,
            IncludeUsage = includeUsage,
            JsonSchema = ReadResponseFormat(body),
            IgnoreEndOfGeneration = body.Bool("ignore_eos") ?? false,
        };
    }

    /// <summary>The request of choice <paramref name="index"/>: each choice samples with its own seed.</summary>
    public TextCompletionRequest ToRequest(IReadOnlyList<int> prompt, IReadOnlyList<string> stop, int index, int topLogprobs) => new()
    {
        Prompt = prompt,
        Sampling = Sampling with { Seed = Sampling.Seed + (ulong)index },
        MaxTokens = MaxTokens,
        StopStrings = stop,
        TopLogprobs = topLogprobs,
        JsonSchema = JsonSchema,
        IgnoreEndOfGeneration = IgnoreEndOfGeneration,
    };

    private static IReadOnlyList<string> ReadStop(RequestBody body)
    {
        if (body.Get("stop") is not { } stop)
            return [];
        if (stop.ValueKind == JsonValueKind.String)
            return stop.GetString()!.Length > 0 ? [stop.GetString()!] : throw ApiException.BadField("stop", "stop strings must not be empty.");
        if (stop.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField("stop", "expected a string or an array of strings.");
        if (stop.GetArrayLength() > MaxStopStrings)
            throw ApiException.BadField("stop", $"at most {MaxStopStrings} stop strings.");
        var list = new List<string>();
        foreach (JsonElement s in stop.EnumerateArray())
        {
            if (s.ValueKind != JsonValueKind.String || s.GetString()!.Length == 0)
                throw ApiException.BadField("stop", "expected non-empty strings.");
            list.Add(s.GetString()!);
        }
        return list;
    }

    private static JsonSchemaNode? ReadResponseFormat(RequestBody body)
    {
        if (body.Object("response_format") is not { } format)
            return null;
        string? type = format.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        switch (type)
        {
            case "text":
                return null;
            case "json_object":
                return JsonSchemaNode.AnyObject;
            case "json_schema":
                if (!format.TryGetProperty("json_schema", out JsonElement wrapper) || wrapper.ValueKind != JsonValueKind.Object)
                    throw ApiException.BadField("response_format.json_schema", "expected an object with a 'schema'.");
                if (!wrapper.TryGetProperty("schema", out JsonElement schema))
                    return JsonSchemaNode.AnyValue;
                try
                {
                    return JsonSchemaCompiler.Compile(schema);
                }
                catch (UnsupportedJsonSchemaException e)
                {
                    throw new ApiException(400, e.Message, param: "response_format.json_schema.schema", code: "unsupported_schema");
                }
            default:
                throw ApiException.BadField("response_format.type", "expected 'text', 'json_object' or 'json_schema'.");
        }
    }
}
