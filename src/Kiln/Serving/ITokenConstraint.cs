namespace Kiln.Serving;

/// <summary>
/// A per-sequence decoding constraint (grammar, JSON schema). The engine calls <see cref="Mask"/> on the
/// sequence's logits before sampling and <see cref="Accept"/> with the chosen token; a constraint is used by
/// one sequence only, so it may keep state.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>Sets the logit of every token that may not come next to negative infinity.</summary>
    void Mask(Span<float> logits);

    /// <summary>Advances the constraint's state past <paramref name="token"/>.</summary>
    void Accept(int token);

    /// <summary>True when the text so far is complete and only an end-of-generation token may follow.</summary>
    bool IsComplete { get; }
}
