namespace Kiln.Training;

/// <summary>One named weight: a view [Offset, Offset + Length) of the model's single parameter buffer. Shape is row-major, outermost first.</summary>
public sealed record ParameterTensor(string Name, int Offset, int[] Shape)
{
    public int Length => Shape.Aggregate(1, (a, b) => a * b);

    /// <summary>Matrices and embeddings get weight decay; norms' gains and biases do not.</summary>
    public bool Decays => Shape.Length >= 2;
}
