namespace Kiln.Serving.Constraints;

/// <summary>
/// A JSON schema reduced to what constrained decoding enforces (built by <see cref="JsonSchemaCompiler"/>).
/// Objects with declared properties are generated with those properties only, in declared order; the
/// required ones always, the optional ones when the model chooses them.
/// </summary>
public sealed class JsonSchemaNode
{
    /// <summary>Any JSON value.</summary>
    public static JsonSchemaNode AnyValue { get; } = new() { Kind = JsonSchemaKind.Any };

    /// <summary>Any JSON object (OpenAI's <c>response_format: json_object</c>).</summary>
    public static JsonSchemaNode AnyObject { get; } = new() { Kind = JsonSchemaKind.Object, AdditionalProperties = AnyValue };

    public required JsonSchemaKind Kind { get; init; }

    /// <summary>Declared properties in declared order (objects).</summary>
    public IReadOnlyList<JsonSchemaProperty> Properties { get; init; } = [];

    /// <summary>Schema of keys not declared (objects without declared properties); null: no other keys.</summary>
    public JsonSchemaNode? AdditionalProperties { get; init; }

    /// <summary>Schema of every element (arrays).</summary>
    public JsonSchemaNode Items { get; init; } = AnyValue;

    public int MinItems { get; init; }

    public int MaxItems { get; init; } = int.MaxValue;

    /// <summary>Fewest characters (Unicode code points) of a string.</summary>
    public int MinLength { get; init; }

    /// <summary>Most characters (Unicode code points) of a string.</summary>
    public int MaxLength { get; init; } = int.MaxValue;

    /// <summary>The admitted values, each as compact UTF-8 JSON (<see cref="JsonSchemaKind.Literals"/>).</summary>
    public IReadOnlyList<byte[]> Literals { get; init; } = [];

    /// <summary>The alternatives (<see cref="JsonSchemaKind.AnyOf"/>); no two may start with the same byte.</summary>
    public IReadOnlyList<JsonSchemaNode> Alternatives { get; init; } = [];

    /// <summary>Whether a value of this schema can start with <paramref name="b"/>.</summary>
    internal bool CanStartWith(byte b) => Kind switch
    {
        JsonSchemaKind.Any => b is (byte)'{' or (byte)'[' or (byte)'"' or (byte)'-' or (>= (byte)'0' and <= (byte)'9') or (byte)'t' or (byte)'f' or (byte)'n',
        JsonSchemaKind.Object => b == '{',
        JsonSchemaKind.Array => b == '[',
        JsonSchemaKind.String => b == '"',
        JsonSchemaKind.Number or JsonSchemaKind.Integer => b == '-' || (b >= '0' && b <= '9'),
        JsonSchemaKind.Boolean => b is (byte)'t' or (byte)'f',
        JsonSchemaKind.Null => b == 'n',
        JsonSchemaKind.Literals => Literals.Any(l => l[0] == b),
        JsonSchemaKind.AnyOf => Alternatives.Any(a => a.CanStartWith(b)),
        _ => false,
    };
}
