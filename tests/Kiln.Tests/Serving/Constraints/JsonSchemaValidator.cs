using System.Text.Json;

namespace Kiln.Tests.Serving.Constraints;

/// <summary>
/// An independent check of a parsed document against the schema keywords the constraint supports, written from
/// the JSON Schema specification rather than from the compiler, so the random-walk tests compare two implementations.
/// </summary>
internal static class JsonSchemaValidator
{
    public static bool IsValid(JsonElement value, JsonElement schema)
    {
        if (schema.ValueKind == JsonValueKind.True)
            return true;
        if (schema.TryGetProperty("const", out JsonElement constant) && !JsonElement.DeepEquals(value, constant))
            return false;
        if (schema.TryGetProperty("enum", out JsonElement values) && !values.EnumerateArray().Any(v => JsonElement.DeepEquals(value, v)))
            return false;
        if (schema.TryGetProperty("anyOf", out JsonElement anyOf) && !anyOf.EnumerateArray().Any(s => IsValid(value, s)))
            return false;
        if (schema.TryGetProperty("oneOf", out JsonElement oneOf) && oneOf.EnumerateArray().Count(s => IsValid(value, s)) != 1)
            return false;
        if (schema.TryGetProperty("type", out JsonElement type))
        {
            string[] types = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()!).ToArray() : [type.GetString()!];
            if (!types.Any(t => HasType(value, t)))
                return false;
        }
        if (value.ValueKind == JsonValueKind.Object)
        {
            var names = value.EnumerateObject().Select(p => p.Name).ToList();
            if (schema.TryGetProperty("required", out JsonElement required) && required.EnumerateArray().Any(r => !names.Contains(r.GetString()!)))
                return false;
            schema.TryGetProperty("properties", out JsonElement properties);
            foreach (JsonProperty member in value.EnumerateObject())
            {
                if (properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(member.Name, out JsonElement propertySchema))
                {
                    if (!IsValid(member.Value, propertySchema))
                        return false;
                }
                else if (schema.TryGetProperty("additionalProperties", out JsonElement extra))
                {
                    if (extra.ValueKind == JsonValueKind.False || (extra.ValueKind == JsonValueKind.Object && !IsValid(member.Value, extra)))
                        return false;
                }
            }
        }
        if (value.ValueKind == JsonValueKind.String)
        {
            int length = value.GetString()!.EnumerateRunes().Count();
            if (schema.TryGetProperty("minLength", out JsonElement minLength) && length < minLength.GetInt32())
                return false;
            if (schema.TryGetProperty("maxLength", out JsonElement maxLength) && length > maxLength.GetInt32())
                return false;
        }
        if (value.ValueKind == JsonValueKind.Array)
        {
            int count = value.GetArrayLength();
            if (schema.TryGetProperty("minItems", out JsonElement min) && count < min.GetInt32())
                return false;
            if (schema.TryGetProperty("maxItems", out JsonElement max) && count > max.GetInt32())
                return false;
            if (schema.TryGetProperty("items", out JsonElement items) && value.EnumerateArray().Any(v => !IsValid(v, items)))
                return false;
        }
        return true;
    }

    private static bool HasType(JsonElement value, string type) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && double.IsInteger(value.GetDouble()),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        _ => throw new ArgumentException(type),
    };
}
