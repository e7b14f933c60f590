using System.Numerics;
using System.Runtime.InteropServices;
using Kiln.Compute;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// A linear layer whose weight W [out, in] stays frozen in its GGUF type, plus an optional trainable LoRA update
/// (QLoRA when W is quantized): y = x·Wᵀ + U·Bᵀ with U = scale·x·Aᵀ. W is never expanded whole: each worker
/// dequantizes a tile of <see cref="Tile"/> rows into its own scratch, uses it for every x row, and moves on.
/// The output (and its gradient) may be a column block of a wider row (stride, offset), so Q/K/V and gate/up
/// write straight into the fused buffers attention and SwiGLU read.
///   Forward:  y[i, off+j] = Σ_k x[i,k]·W[j,k] + Σ_q U[i,q]·B[j,q]
///   Backward: dx += dy·W + DU·A, dB += dyᵀ·U, dA += DUᵀ·x, with DU = scale·dy·B
/// Every sum runs in a fixed order whatever the thread split, as in <see cref="TrainingMatMul{T}"/>.
/// </summary>
public sealed class FrozenLoraLinear<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    public const int Tile = 16;

    private enum Phase { Forward, AddLora, BackwardInput, LoraOutputGradient, LoraBGradient }

    private readonly TrainingMatMul<T> _matMul;
    private T[][] _tiles = [];
    private float[][] _floatTiles = [];
    private Phase _phase;
    private WeightMatrix _w = null!;
    private ReadOnlyMemory<T> _x, _dy, _b, _u;
    private Memory<T> _y, _dx, _du, _db;
    private int _rows, _stride, _offset, _rank, _rowBlock;
    private T _scale;

    public FrozenLoraLinear(WorkerPool? pool) : base(pool) => _matMul = new TrainingMatMul<T>(pool);

    /// <summary>x[rows, in] → y[rows, stride] columns [offset, offset + out); U saved when <paramref name="lora"/> is given.</summary>
    public void Forward(WeightMatrix w, ReadOnlyMemory<T> x, Memory<T> y, int rows, int stride, int offset, in LoraTerm<T> lora)
    {
        Check(w, x.Length, rows, y.Length, stride, offset, lora);
        EnsureTiles(w.Columns);
        (_phase, _w, _x, _y, _rows, _stride, _offset) = (Phase.Forward, w, x, y, rows, stride, offset);
        Run(w.Rows, Tile);
        if (lora.IsNone)
            return;
        int r = lora.Rank;
        _matMul.Forward(x, lora.A, lora.U, rows, r, w.Columns);
        var u = lora.U.Span[..(rows * r)];
        for (int i = 0; i < u.Length; i++)
            u[i] *= lora.Scale;
        (_phase, _u, _b, _rank) = (Phase.AddLora, lora.U, lora.B, r);
        Run(rows);
    }

    /// <summary>dy[rows, stride] columns [offset, offset + out) → dx[rows, in] +=, and the adapter's dA, dB +=.</summary>
    public void Backward(WeightMatrix w, ReadOnlyMemory<T> x, ReadOnlyMemory<T> dy, Memory<T> dx, int rows, int stride, int offset, in LoraTerm<T> lora)
    {
        Check(w, x.Length, rows, dy.Length, stride, offset, lora);
        if (dx.Length < rows * w.Columns)
            throw new ArgumentException($"dx holds {dx.Length} values, {rows}×{w.Columns} needed");
        EnsureTiles(w.Columns);
        // one block of dx rows per worker: each block dequantizes all of W once, so fewer blocks mean less
        // dequantization; the sums run over W's rows in order whatever the blocking, so the bits do not change
        _rowBlock = (rows + ThreadCount - 1) / ThreadCount;
        (_phase, _w, _dy, _dx, _rows, _stride, _offset) = (Phase.BackwardInput, w, dy, dx, rows, stride, offset);
        Run((rows + _rowBlock - 1) / _rowBlock);
        if (lora.IsNone)
            return;
        int r = lora.Rank;
        (_phase, _b, _du, _rank, _scale) = (Phase.LoraOutputGradient, lora.B, lora.DU, r, lora.Scale);
        Run(rows);
        (_phase, _u, _db) = (Phase.LoraBGradient, lora.U, lora.GradB);
        Run(w.Rows, Tile);
        _matMul.BackwardWeight(lora.DU, x, lora.GradA, rows, r, w.Columns);
        _matMul.BackwardInput(lora.DU, lora.A, dx, rows, r, w.Columns);
    }

    private static void Check(WeightMatrix w, int xLength, int rows, int yLength, int stride, int offset, in LoraTerm<T> lora)
    {
        if (rows <= 0 || offset < 0 || offset + w.Rows > stride)
            throw new ArgumentException($"rows {rows}, columns [{offset}, {offset + w.Rows}) do not fit a row of {stride}");
        if (xLength < rows * w.Columns || yLength < (rows - 1) * stride + offset + w.Rows)
            throw new ArgumentException($"buffers too small for {rows} rows of {w.Name} [{w.Rows} × {w.Columns}]");
        if (!lora.IsNone && (lora.A.Length < lora.Rank * w.Columns || lora.B.Length < w.Rows * lora.Rank
            || lora.GradA.Length < lora.A.Length || lora.GradB.Length < lora.B.Length
            || lora.U.Length < rows * lora.Rank || lora.DU.Length < rows * lora.Rank))
            throw new ArgumentException($"LoRA buffers of rank {lora.Rank} do not fit {w.Name} [{w.Rows} × {w.Columns}] over {rows} rows");
    }

    private void EnsureTiles(int columns)
    {
        if (_tiles.Length == ThreadCount && _tiles[0].Length >= Tile * columns)
            return;
        int size = Math.Max(Tile * columns, _tiles.Length > 0 ? _tiles[0].Length : 0);
        _tiles = new T[ThreadCount][];
        _floatTiles = new float[ThreadCount][];
        for (int i = 0; i < ThreadCount; i++)
        {
            _tiles[i] = new T[size];
            _floatTiles[i] = typeof(T) == typeof(float) ? [] : new float[size];
        }
    }

    /// <summary>Rows [j0, j0 + count) of W as T, in the worker's scratch, row after row.</summary>
    private Span<T> DequantizeTile(int worker, int j0, int count)
    {
        int k = _w.Columns;
        var tile = _tiles[worker].AsSpan(0, count * k);
        if (typeof(T) == typeof(float))
        {
            var f = MemoryMarshal.Cast<T, float>(tile);
            for (int j = 0; j < count; j++)
                _w.DequantizeRow(j0 + j, f.Slice(j * k, k));
        }
        else
        {
            var f = _floatTiles[worker].AsSpan(0, count * k);
            for (int j = 0; j < count; j++)
                _w.DequantizeRow(j0 + j, f.Slice(j * k, k));
            for (int i = 0; i < f.Length; i++)
                tile[i] = T.CreateChecked(f[i]);
        }
        return tile;
    }

    public override void Execute(int begin, int end, int worker)
    {
        int k = _w.Columns, m = _w.Rows, stride = _stride, offset = _offset, r = _rank;
        switch (_phase)
        {
            case Phase.Forward:
            {
                var x = _x.Span; var y = _y.Span;
                for (int j0 = begin; j0 < end; j0 += Tile)
                {
                    int count = Math.Min(end, j0 + Tile) - j0;
                    var tile = DequantizeTile(worker, j0, count);
                    for (int i = 0; i < _rows; i++)
                    {
                        var xi = x.Slice(i * k, k);
                        var yi = y.Slice(i * stride + offset + j0, count);
                        for (int j = 0; j < count; j++)
                            yi[j] = DenseVector.Dot(xi, tile.Slice(j * k, k));
                    }
                }
                break;
            }
            case Phase.AddLora:
            {
                var u = _u.Span; var b = _b.Span; var y = _y.Span;
                for (int i = begin; i < end; i++)
                {
                    var ui = u.Slice(i * r, r);
                    var yi = y.Slice(i * stride + offset, m);
                    for (int j = 0; j < m; j++)
                        yi[j] += DenseVector.Dot(ui, b.Slice(j * r, r));
                }
                break;
            }
            case Phase.BackwardInput:
            {
                // each unit owns a block of dx rows and walks all of W tile by tile, in W's row order
                var dy = _dy.Span; var dx = _dx.Span;
                int i0 = begin * _rowBlock, i1 = Math.Min(_rows, end * _rowBlock);
                for (int j0 = 0; j0 < m; j0 += Tile)
                {
                    int count = Math.Min(m, j0 + Tile) - j0;
                    var tile = DequantizeTile(worker, j0, count);
                    for (int i = i0; i < i1; i++)
                    {
                        var dyi = dy.Slice(i * stride + offset + j0, count);
                        var dxi = dx.Slice(i * k, k);
                        for (int j = 0; j < count; j++)
                            DenseVector.AddScaled(tile.Slice(j * k, k), dyi[j], dxi);
                    }
                }
                break;
            }
            case Phase.LoraOutputGradient:
            {
                var dy = _dy.Span; var b = _b.Span; var du = _du.Span;
                for (int i = begin; i < end; i++)
                {
                    var dui = du.Slice(i * r, r);
                    dui.Clear();
                    var dyi = dy.Slice(i * stride + offset, m);
                    for (int j = 0; j < m; j++)
                        DenseVector.AddScaled(b.Slice(j * r, r), dyi[j], dui);
                    for (int q = 0; q < r; q++)
                        dui[q] *= _scale;
                }
                break;
            }
            case Phase.LoraBGradient:
            {
                var dy = _dy.Span; var u = _u.Span; var db = _db.Span;
                for (int j = begin; j < end; j++)
                {
                    var dbj = db.Slice(j * r, r);
                    for (int i = 0; i < _rows; i++)
                        DenseVector.AddScaled(u.Slice(i * r, r), dy[i * stride + offset + j], dbj);
                }
                break;
            }
        }
    }
}
