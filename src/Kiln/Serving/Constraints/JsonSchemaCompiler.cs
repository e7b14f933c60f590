using System.Text.Json;

namespace Kiln.Serving.Constraints;

/// <summary>
/// Reduces a JSON schema to a <see cref="JsonSchemaNode"/>. Supported: <c>type</c> (one or a list), <c>properties</c>,
/// <c>required</c>, <c>additionalProperties</c>, <c>items</c>, <c>minItems</c>, <c>maxItems</c>, <c>minLength</c>, <c>maxLength</c>, <c>enum</c>,
/// <c>const</c>, <c>anyOf</c>/<c>oneOf</c> whose alternatives start with different characters, non-recursive
/// <c>$ref</c>s within the document (<c>#/$defs/...</c>), and annotations
/// (<c>title</c>, <c>description</c>, ...). Every other keyword is collected and reported through
/// <see cref="UnsupportedJsonSchemaException"/>, so a constraint is never silently weaker than the schema.
/// </summary>
public static class JsonSchemaCompiler
{
    /// <summary>Compact output; non-ASCII characters stay as they are rather than \u-escaped.</summary>
    internal static readonly JsonSerializerOptions CompactOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly HashSet<string> Annotations =
        ["title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly", "writeOnly"];

    public static JsonSchemaNode Compile(JsonElement schema)
    {
        var scope = new Scope(schema);
        JsonSchemaNode node = CompileNode(schema, "$", scope);
        if (scope.Problems.Count > 0)
            throw new UnsupportedJsonSchemaException(scope.Problems);
        return node;
    }

    public static JsonSchemaNode Compile(string schemaJson)
    {
        using var document = JsonDocument.Parse(schemaJson);
        return Compile(document.RootElement);
    }

    private static JsonSchemaNode CompileNode(JsonElement schema, string path, Scope scope)
    {
        if (schema.ValueKind == JsonValueKind.True)
            return JsonSchemaNode.AnyValue;
        if (schema.ValueKind != JsonValueKind.Object)
        {
            scope.Problems.Add($"{path}: a schema must be an object or true");
            return JsonSchemaNode.AnyValue;
        }

        if (schema.TryGetProperty("$ref", out JsonElement reference))
            return CompileReference(schema, reference, path, scope);

        foreach (JsonProperty keyword in schema.EnumerateObject())
        {
            bool definitions = path == "$" && keyword.Name is "$defs" or "definitions";
            if (!Annotations.Contains(keyword.Name) && !IsHandled(keyword.Name) && !definitions)
                scope.Problems.Add($"{path}: '{keyword.Name}'");
        }

        if (schema.TryGetProperty("enum", out JsonElement enumValues) || schema.TryGetProperty("const", out _))
            return CompileLiterals(schema, path, scope);

        JsonElement alternatives = default;
        bool hasAlternatives = schema.TryGetProperty("anyOf", out alternatives) || schema.TryGetProperty("oneOf", out alternatives);
        if (hasAlternatives)
        {
            if (alternatives.ValueKind != JsonValueKind.Array || alternatives.GetArrayLength() == 0)
            {
                scope.Problems.Add($"{path}.anyOf: must be a non-empty array");
                return JsonSchemaNode.AnyValue;
            }
            if (schema.TryGetProperty("type", out _))
                scope.Problems.Add($"{path}: 'anyOf' together with 'type'");
            var nodes = new List<JsonSchemaNode>();
            int i = 0;
            foreach (JsonElement alternative in alternatives.EnumerateArray())
                nodes.Add(CompileNode(alternative, $"{path}.anyOf[{i++}]", scope));
            return Union(nodes, path, scope);
        }

        if (!schema.TryGetProperty("type", out JsonElement type))
        {
            if (schema.TryGetProperty("properties", out _) || schema.TryGetProperty("required", out _) || schema.TryGetProperty("additionalProperties", out _))
                return CompileTyped("object", schema, path, scope);
            if (schema.TryGetProperty("items", out _) || schema.TryGetProperty("minItems", out _) || schema.TryGetProperty("maxItems", out _))
                return CompileTyped("array", schema, path, scope);
            return JsonSchemaNode.AnyValue;
        }
        if (type.ValueKind == JsonValueKind.String)
            return CompileTyped(type.GetString()!, schema, path, scope);
        if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0)
        {
            var nodes = new List<JsonSchemaNode>();
            foreach (JsonElement t in type.EnumerateArray())
            {
                if (t.ValueKind != JsonValueKind.String)
                {
                    scope.Problems.Add($"{path}.type: entries must be strings");
                    return JsonSchemaNode.AnyValue;
                }
                nodes.Add(CompileTyped(t.GetString()!, schema, path, scope));
            }
            return Union(nodes, path, scope);
        }
        scope.Problems.Add($"{path}.type: must be a string or a non-empty array of strings");
        return JsonSchemaNode.AnyValue;
    }

    /// <summary>
    /// A local reference (<c>#</c>, <c>#/$defs/Name</c>, any JSON pointer into the document) is compiled in place;
    /// references to other documents, recursive ones and keywords beside <c>$ref</c> are reported.
    /// </summary>
    private static JsonSchemaNode CompileReference(JsonElement schema, JsonElement reference, string path, Scope scope)
    {
        foreach (JsonProperty keyword in schema.EnumerateObject())
        {
            bool definitions = path == "$" && keyword.Name is "$defs" or "definitions";
            if (keyword.Name != "$ref" && !Annotations.Contains(keyword.Name) && !definitions)
                scope.Problems.Add($"{path}: '{keyword.Name}' beside '$ref'");
        }
        string? target = reference.ValueKind == JsonValueKind.String ? reference.GetString() : null;
        if (target is null || !(target == "#" || target.StartsWith("#/", StringComparison.Ordinal)))
        {
            scope.Problems.Add($"{path}: '$ref' to '{target}' (only references within the schema, '#/...', are supported)");
            return JsonSchemaNode.AnyValue;
        }
        if (!scope.InProgress.Add(target))
        {
            scope.Problems.Add($"{path}: recursive '$ref' to '{target}'");
            return JsonSchemaNode.AnyValue;
        }
        try
        {
            JsonElement resolved = scope.Root;
            foreach (string raw in target.Length > 1 ? target[2..].Split('/') : [])
            {
                string token = Uri.UnescapeDataString(raw).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
                if (resolved.ValueKind == JsonValueKind.Object && resolved.TryGetProperty(token, out JsonElement child))
                    resolved = child;
                else if (resolved.ValueKind == JsonValueKind.Array && int.TryParse(token, out int index) && index >= 0 && index < resolved.GetArrayLength())
                    resolved = resolved[index];
                else
                {
                    scope.Problems.Add($"{path}: '$ref' to '{target}' points at nothing");
                    return JsonSchemaNode.AnyValue;
                }
            }
            return CompileNode(resolved, target, scope);
        }
        finally
        {
            scope.InProgress.Remove(target);
        }
    }

    private sealed class Scope(JsonElement root)
    {
        public JsonElement Root { get; } = root;

        public List<string> Problems { get; } = [];

        /// <summary>References being compiled, to catch recursion.</summary>
        public HashSet<string> InProgress { get; } = new(StringComparer.Ordinal);
    }

    private static bool IsHandled(string keyword) => keyword is "type" or "properties" or "required" or "additionalProperties"
        or "items" or "minItems" or "maxItems" or "minLength" or "maxLength" or "enum" or "const" or "anyOf" or "oneOf";

    private static JsonSchemaNode CompileTyped(string type, JsonElement schema, string path, Scope scope)
    {
        switch (type)
        {
            case "object":
                return CompileObject(schema, path, scope);
            case "array":
            {
                JsonSchemaNode items = schema.TryGetProperty("items", out JsonElement itemsSchema)
                    ? CompileNode(itemsSchema, path + ".items", scope)
                    : JsonSchemaNode.AnyValue;
                int min = ReadCount(schema, "minItems", 0, path, scope);
                int max = ReadCount(schema, "maxItems", int.MaxValue, path, scope);
                if (min > max)
                    scope.Problems.Add($"{path}: minItems {min} exceeds maxItems {max}");
                return new JsonSchemaNode { Kind = JsonSchemaKind.Array, Items = items, MinItems = min, MaxItems = max };
            }
            case "string":
            {
                int min = ReadCount(schema, "minLength", 0, path, scope);
                int max = ReadCount(schema, "maxLength", int.MaxValue, path, scope);
                if (min > max)
                    scope.Problems.Add($"{path}: minLength {min} exceeds maxLength {max}");
                return new JsonSchemaNode { Kind = JsonSchemaKind.String, MinLength = min, MaxLength = max };
            }
            case "number": return new JsonSchemaNode { Kind = JsonSchemaKind.Number };
            case "integer": return new JsonSchemaNode { Kind = JsonSchemaKind.Integer };
            case "boolean": return new JsonSchemaNode { Kind = JsonSchemaKind.Boolean };
            case "null": return new JsonSchemaNode { Kind = JsonSchemaKind.Null };
            default:
                scope.Problems.Add($"{path}.type: unknown type '{type}'");
                return JsonSchemaNode.AnyValue;
        }
    }

    private static JsonSchemaNode CompileObject(JsonElement schema, string path, Scope scope)
    {
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("required", out JsonElement requiredNames))
        {
            if (requiredNames.ValueKind != JsonValueKind.Array)
                scope.Problems.Add($"{path}.required: must be an array of strings");
            else
                foreach (JsonElement name in requiredNames.EnumerateArray())
                {
                    if (name.ValueKind == JsonValueKind.String)
                        required.Add(name.GetString()!);
                    else
                        scope.Problems.Add($"{path}.required: must be an array of strings");
                }
        }

        var properties = new List<JsonSchemaProperty>();
        if (schema.TryGetProperty("properties", out JsonElement declared))
        {
            if (declared.ValueKind != JsonValueKind.Object)
                scope.Problems.Add($"{path}.properties: must be an object");
            else
                foreach (JsonProperty p in declared.EnumerateObject())
                    properties.Add(new JsonSchemaProperty(p.Name, CompileNode(p.Value, $"{path}.properties.{p.Name}", scope), required.Contains(p.Name)));
        }
        foreach (string name in required)
        {
            if (!properties.Any(p => p.Name == name))
                scope.Problems.Add($"{path}.required: '{name}' is not declared in properties");
        }

        JsonSchemaNode? additional = JsonSchemaNode.AnyValue;
        if (schema.TryGetProperty("additionalProperties", out JsonElement extra))
        {
            additional = extra.ValueKind switch
            {
                JsonValueKind.False => null,
                JsonValueKind.True => JsonSchemaNode.AnyValue,
                _ => CompileNode(extra, path + ".additionalProperties", scope),
            };
        }
        // With declared properties only those are generated: a valid output whatever additionalProperties allows.
        if (properties.Count > 0)
            additional = null;
        return new JsonSchemaNode { Kind = JsonSchemaKind.Object, Properties = properties, AdditionalProperties = additional };
    }

    private static int ReadCount(JsonElement schema, string name, int fallback, string path, Scope scope)
    {
        if (!schema.TryGetProperty(name, out JsonElement value))
            return fallback;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int count) && count >= 0)
            return count;
        scope.Problems.Add($"{path}.{name}: must be a non-negative integer");
        return fallback;
    }

    private static JsonSchemaNode CompileLiterals(JsonElement schema, string path, Scope scope)
    {
        var values = new List<JsonElement>();
        if (schema.TryGetProperty("const", out JsonElement single))
            values.Add(single);
        if (schema.TryGetProperty("enum", out JsonElement many))
        {
            if (many.ValueKind != JsonValueKind.Array || many.GetArrayLength() == 0)
                scope.Problems.Add($"{path}.enum: must be a non-empty array");
            else
                values.AddRange(many.EnumerateArray());
        }
        string[]? types = null;
        if (schema.TryGetProperty("type", out JsonElement type))
            types = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString() ?? "").ToArray() : [type.GetString() ?? ""];

        var literals = new List<byte[]>();
        foreach (JsonElement value in values)
        {
            if (types is not null && !types.Any(t => MatchesType(value, t)))
                continue;
            byte[] compact = JsonSerializer.SerializeToUtf8Bytes(value, CompactOptions);
            if (!literals.Any(l => l.AsSpan().SequenceEqual(compact)))
                literals.Add(compact);
        }
        if (literals.Count == 0)
        {
            scope.Problems.Add($"{path}: no enum/const value matches the schema's type");
            return JsonSchemaNode.AnyValue;
        }
        return new JsonSchemaNode { Kind = JsonSchemaKind.Literals, Literals = literals };
    }

    private static bool MatchesType(JsonElement value, string type) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        _ => false,
    };

    private static JsonSchemaNode Union(List<JsonSchemaNode> nodes, string path, Scope scope)
    {
        // Integers are numbers: an alternative admitting all numbers covers one admitting integers.
        if (nodes.Any(n => n.Kind == JsonSchemaKind.Number))
            nodes.RemoveAll(n => n.Kind == JsonSchemaKind.Integer);
        if (nodes.Count == 1)
            return nodes[0];
        if (nodes.Any(n => n.Kind == JsonSchemaKind.Any))
            return JsonSchemaNode.AnyValue;
        for (int b = 0; b < 256; b++)
        {
            int starts = nodes.Count(n => n.CanStartWith((byte)b));
            if (starts > 1)
            {
                scope.Problems.Add($"{path}: 'anyOf' alternatives that can start with the same character '{(char)b}' (only alternatives of different types are supported)");
                break;
            }
        }
        return new JsonSchemaNode { Kind = JsonSchemaKind.AnyOf, Alternatives = nodes };
    }
}
