using Microsoft.AspNetCore.Http;

namespace Kiln.Server;

/// <summary>GET /v1/models and /v1/models/{id}, and the model-name check every request makes.</summary>
internal static class ModelsEndpoint
{
    /// <summary>A request naming a model the server does not serve gets 404, as OpenAI answers; no name means the served model.</summary>
    public static void CheckModel(RequestBody body, ServedModel model)
    {
        string? name = body.String("model");
        if (name is not null && name.Length > 0 && name != model.Engine.ModelName)
            throw NotFound(name);
    }

    public static ApiException NotFound(string name) =>
        new(404, $"The model '{name}' does not exist; the server serves another.", param: "model", code: "model_not_found");

    public static Task ListAsync(HttpContext context, ServedModel model, CancellationToken cancellationToken) =>
        JsonResponses.WriteAsync(context.Response, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            Model(w, model);
            w.WriteEndArray();
            w.WriteEndObject();
        }, cancellationToken);

    public static Task GetAsync(HttpContext context, ServedModel model, string id, CancellationToken cancellationToken)
    {
        if (id != model.Engine.ModelName)
            throw NotFound(id);
        return JsonResponses.WriteAsync(context.Response, 200, w => Model(w, model), cancellationToken);
    }

    private static void Model(System.Text.Json.Utf8JsonWriter w, ServedModel model)
    {
        w.WriteStartObject();
        w.WriteString("id", model.Engine.ModelName);
        w.WriteString("object", "model");
        w.WriteNumber("created", 0);
        w.WriteString("owned_by", "kiln");
        w.WriteNumber("context_length", model.Engine.ContextLength);
        w.WriteEndObject();
    }
}
