namespace Kiln.Compute;

/// <summary>How a <see cref="WeightMatrix"/>'s rows are arranged in memory.</summary>
public enum WeightLayout
{
    /// <summary>ggml's layout: row after row, each <see cref="WeightMatrix.RowBytes"/> long.</summary>
    Rows,

    /// <summary>
    /// Q4_0 rows in groups of eight interleaved by block column (<see cref="Tensors.Q4_0x8"/>); the last
    /// Rows mod 8 rows, which fill no group, stay plain. Each group covers the bytes of its eight plain rows.
    /// </summary>
    Q4_0Interleaved8,
}
