namespace Kiln.Serving.Constraints;

/// <summary>A declared object property: its name, its JSON-encoded key and the schema of its value.</summary>
public sealed class JsonSchemaProperty
{
    public JsonSchemaProperty(string name, JsonSchemaNode schema, bool required)
    {
        Name = name;
        Schema = schema;
        Required = required;
        // The key as the grammar matches it after the opening quote: escaped UTF-8 plus the closing quote, so no key is a prefix of another.
        string encoded = System.Text.Json.JsonSerializer.Serialize(name, JsonSchemaCompiler.CompactOptions);
        KeyTail = System.Text.Encoding.UTF8.GetBytes(encoded[1..]);
    }

    public string Name { get; }

    public JsonSchemaNode Schema { get; }

    public bool Required { get; }

    internal byte[] KeyTail { get; }
}
