namespace Kiln.Serving.Constraints;

/// <summary>What kind of JSON value a <see cref="JsonSchemaNode"/> admits.</summary>
public enum JsonSchemaKind
{
    /// <summary>Any JSON value.</summary>
    Any,
    Object,
    Array,
    String,
    Number,
    Integer,
    Boolean,
    Null,
    /// <summary>One of a fixed set of values (<c>enum</c> / <c>const</c>), matched in their compact serialization.</summary>
    Literals,
    /// <summary>One of several alternatives that differ in their first byte (<c>anyOf</c>, <c>oneOf</c>, a list of types).</summary>
    AnyOf,
}
