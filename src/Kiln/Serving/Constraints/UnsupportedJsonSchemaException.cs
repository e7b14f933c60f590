namespace Kiln.Serving.Constraints;

/// <summary>The schema uses features constrained decoding does not enforce; <see cref="Features"/> names each one with its location.</summary>
public sealed class UnsupportedJsonSchemaException : Exception
{
    public UnsupportedJsonSchemaException(IReadOnlyList<string> features)
        : base("Unsupported JSON schema feature(s): " + string.Join("; ", features)) => Features = features;

    public IReadOnlyList<string> Features { get; }
}
