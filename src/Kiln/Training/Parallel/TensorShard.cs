namespace Kiln.Training.Parallel;

/// <summary>
/// How one weight is split over the tensor-parallel ranks: along <see cref="Axis"/>, whose full extent is the
/// concatenation of <see cref="Blocks"/>; each block is cut into as many equal parts as there are ranks and rank r
/// holds part r of every block, in block order. Fused weights need the blocks: Llama's QKV rows are [Q heads | K heads
/// | V heads], so a rank's shard is its Q heads, then its K heads, then its V heads (the same layout as the
/// unsharded fused weight, with fewer heads); SwiGLU's gate/up rows are [gate | up] likewise.
/// </summary>
public sealed record TensorShard(ShardAxis Axis, int[] Blocks)
{
    public static readonly TensorShard Replicated = new(ShardAxis.Replicated, []);

    public static TensorShard Output(params int[] blocks) => new(ShardAxis.Output, blocks);

    public static TensorShard Input(int width) => new(ShardAxis.Input, [width]);

    /// <summary>A contiguous run of elements: Length elements at Full in the whole tensor are at Shard in the rank's shard.</summary>
    public readonly record struct Run(int Full, int Shard, int Length);

    /// <summary>The shape each rank holds of a tensor whose whole shape is <paramref name="full"/>.</summary>
    public int[] ShardShape(int[] full, int ranks)
    {
        CheckFull(full, ranks);
        var shape = (int[])full.Clone();
        if (Axis == ShardAxis.Output)
            shape[0] /= ranks;
        else if (Axis == ShardAxis.Input)
            shape[1] /= ranks;
        return shape;
    }

    /// <summary>The whole shape of a tensor whose shard on each of <paramref name="ranks"/> ranks has shape <paramref name="shard"/>.</summary>
    public int[] FullShape(int[] shard, int ranks)
    {
        var shape = (int[])shard.Clone();
        if (Axis == ShardAxis.Output)
            shape[0] *= ranks;
        else if (Axis == ShardAxis.Input)
            shape[1] *= ranks;
        CheckFull(shape, ranks);
        return shape;
    }

    /// <summary>Where rank <paramref name="rank"/>'s elements lie in the whole tensor, in increasing order of both offsets.</summary>
    public Run[] Runs(int[] full, int rank, int ranks)
    {
        CheckFull(full, ranks);
        if ((uint)rank >= (uint)ranks)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"no rank {rank} of {ranks}");
        int rows = full[0];
        int rowLength = full.Skip(1).Aggregate(1, (a, b) => a * b);
        switch (Axis)
        {
            case ShardAxis.Output:
            {
                var runs = new Run[Blocks.Length];
                int start = 0, shard = 0;
                for (int b = 0; b < Blocks.Length; b++)
                {
                    int part = Blocks[b] / ranks;
                    runs[b] = new Run((start + rank * part) * rowLength, shard, part * rowLength);
                    start += Blocks[b];
                    shard += part * rowLength;
                }
                return runs;
            }
            case ShardAxis.Input:
            {
                int part = full[1] / ranks;
                var runs = new Run[rows];
                for (int r = 0; r < rows; r++)
                    runs[r] = new Run(r * full[1] + rank * part, r * part, part);
                return runs;
            }
            default:
                return [new Run(0, 0, rows * rowLength)];
        }
    }

    private void CheckFull(int[] full, int ranks)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ranks);
        int extent = Axis switch
        {
            ShardAxis.Output => full[0],
            ShardAxis.Input when full.Length == 2 => full[1],
            ShardAxis.Input => throw new ArgumentException($"only a matrix splits along its input features, not a tensor of shape [{string.Join(", ", full)}]"),
            _ => -1,
        };
        if (extent < 0)
            return;
        if (Blocks.Sum() != extent)
            throw new ArgumentException($"blocks [{string.Join(", ", Blocks)}] do not make up the {Axis} extent {extent} of shape [{string.Join(", ", full)}]");
        if (Blocks.Any(b => b % ranks != 0))
            throw new ArgumentException($"blocks [{string.Join(", ", Blocks)}] do not split over {ranks} ranks");
    }
}
