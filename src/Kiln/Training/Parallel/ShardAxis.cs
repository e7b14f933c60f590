namespace Kiln.Training.Parallel;

/// <summary>Which dimension of a weight stored [out, in] tensor parallelism splits across the ranks.</summary>
public enum ShardAxis
{
    /// <summary>Every rank holds the whole tensor (norms, embeddings, the output head, row-parallel biases).</summary>
    Replicated,

    /// <summary>
    /// Output features, the rows of W (and the elements of its bias): Megatron's column-parallel linear. Each rank
    /// computes its slice of y from the whole x, so no communication is needed until a row-parallel layer.
    /// </summary>
    Output,

    /// <summary>
    /// Input features, the columns of W: Megatron's row-parallel linear. Each rank multiplies its slice of x and
    /// the partial products are summed across ranks.
    /// </summary>
    Input,
}
