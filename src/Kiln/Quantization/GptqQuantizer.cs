using System.Numerics.Tensors;
using System.Buffers.Binary;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Quantization;

/// <summary>
/// GPTQ (Frantar et al., ICLR 2023) onto ggml block formats. Columns are quantized one at a time (in the
/// order of decreasing H diagonal with act-order), each column's rounding error divided by U[i,i] and spread
/// over the columns not yet quantized through row i of U (the upper Cholesky factor of H⁻¹), eagerly within
/// a block of 128 columns and lazily, once per block, for the columns after it. The grid each value is
/// rounded to is the target type's: when a column of a block (Q4_0/Q5_0/Q8_0: 32 columns; Q4_K/Q6_K: the
/// 256-column super-block) is reached first, the type's round-to-nearest quantizer is run on that block's current
/// (error-updated) weights and its stored scales (and mins) are kept; the block's codes are then chosen column
/// by column on that grid. With <c>searchScales</c> (Q4_0/Q5_0 in the natural column order) the block's scale is instead
/// the one <see cref="SymmetricScaleSearch"/> finds for those weights, each column's error weighted by 1/U_ii² (what
/// GPTQ's loss charges for it). The output is the type's ordinary rows, which any ggml reader loads.
/// Rows are independent given U, so they are spread over the pool.
/// </summary>
public static class GptqQuantizer
{
    public const int LazyBlock = 128;

    public static bool Supports(GgmlType type) => type is GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q6_K;

    /// <summary>
    /// Quantizes <paramref name="weights"/> (rows × columns, row-major) into <paramref name="output"/> (rows of
    /// <paramref name="type"/>). <paramref name="hessian"/> (columns × columns, row-major) is overwritten.
    /// </summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> weights, int rows, int columns, double[] hessian,
        double damp, bool actOrder, Span<byte> output, WorkerPool? pool = null, bool searchScales = false)
    {
        if (!Supports(type))
            throw new NotSupportedException($"GPTQ writes Q4_0, Q5_0, Q8_0, Q4_K and Q6_K, not {GgmlTypeTraits.Name(type)}");
        int group = GridBlock(type);
        if (columns % group != 0)
            throw new ArgumentException($"rows of {columns} are not whole {GgmlTypeTraits.Name(type)} blocks");
        if (weights.Length < (long)rows * columns || hessian.Length < (long)columns * columns)
            throw new ArgumentException("weights or Hessian too small");
        int rowBytes = (int)GgmlTypeTraits.RowBytes(type, columns);
        if (output.Length < (long)rows * rowBytes)
            throw new ArgumentException("output too small", nameof(output));
        if (damp < 0 || double.IsNaN(damp))
            throw new ArgumentOutOfRangeException(nameof(damp), damp, "damping must not be negative");

        int n = columns;
        // Columns no input ever reached carry no information: weight zero, unit diagonal, as in the reference code.
        var dead = new bool[n];
        for (int i = 0; i < n; i++)
        {
            if (hessian[i * n + i] == 0)
            {
                hessian[i * n + i] = 1;
                dead[i] = true;
            }
        }
        var order = Enumerable.Range(0, n).ToArray();
        if (actOrder)
        {
            var diagonal = order.Select(i => hessian[i * n + i]).ToArray();
            order = order.OrderByDescending(i => diagonal[i]).ThenBy(i => i).ToArray();
        }
        var permuted = new double[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
                permuted[i * n + j] = hessian[order[i] * n + order[j]];
        }
        double[] u = HessianInverse.UpperCholeskyOfInverse(permuted, n, damp);

        var work = new RowWork(type, weights.ToArray(), n, u, order, dead, output.Length, rowBytes, pool?.ThreadCount ?? 1)
        {
            // Q8_0's 255 levels leave the scale nothing to win, and with act-order a block's scale is fixed when its
            // first column comes up while the others still move, so a scale fitted to their values then is no better
            // than the reference one (both measured: no gain on random layers nor on the trained model)
            SearchScales = searchScales && !actOrder && type is GgmlType.Q4_0 or GgmlType.Q5_0,
        };
        if (pool is null)
            work.Execute(0, rows, 0);
        else
            pool.For(rows, work);
        work.Output.AsSpan(0, rows * rowBytes).CopyTo(output);
    }

    /// <summary>Columns whose scales are fixed together: a Q4_0/Q5_0/Q8_0 block, a K super-block.</summary>
    private static int GridBlock(GgmlType type) => type is GgmlType.Q4_K or GgmlType.Q6_K ? 256 : 32;

    /// <summary>Columns sharing one scale (and offset): Q6_K's 16, everyone else's 32.</summary>
    private static int ScaleGroup(GgmlType type) => type == GgmlType.Q6_K ? 16 : 32;

    private sealed class RowWork : IParallelWork
    {
        private readonly GgmlType _type;
        private readonly float[] _weights;
        private readonly int _n;
        private readonly double[] _u;
        private readonly int[] _order;
        /// <summary>The permuted position of each column.</summary>
        private readonly int[] _position;
        private readonly bool[] _dead;
        private readonly int _rowBytes;
        private readonly double[][] _w, _err;
        private readonly float[][] _scale, _offset, _block, _weightsOfBlock;
        private readonly bool[][] _ready;

        public RowWork(GgmlType type, float[] weights, int n, double[] u, int[] order, bool[] dead, int outputBytes, int rowBytes, int threads)
        {
            _type = type;
            _weights = weights;
            _n = n;
            _u = u;
            _order = order;
            _dead = dead;
            _rowBytes = rowBytes;
            _position = new int[n];
            for (int i = 0; i < n; i++)
                _position[order[i]] = i;
            Output = new byte[outputBytes];
            int groups = n / ScaleGroup(type);
            _w = new double[threads][];
            _err = new double[threads][];
            _scale = new float[threads][];
            _offset = new float[threads][];
            _block = new float[threads][];
            _weightsOfBlock = new float[threads][];
            _ready = new bool[threads][];
            for (int t = 0; t < threads; t++)
            {
                _w[t] = new double[n];
                _err[t] = new double[LazyBlock];
                _scale[t] = new float[groups];
                _offset[t] = new float[groups];
                _block[t] = new float[Q4_K.BlockSize];
                _weightsOfBlock[t] = new float[Q4_K.BlockSize];
                _ready[t] = new bool[n / GridBlock(type)];
            }
        }

        public byte[] Output { get; }

        /// <summary>Q4_0/Q5_0 blocks: <see cref="SymmetricScaleSearch"/> under the weights 1/U_ii² instead of the reference scale.</summary>
        public bool SearchScales { get; init; }

        public void Execute(int begin, int end, int worker)
        {
            for (int r = begin; r < end; r++)
                QuantizeRow(r, worker);
        }

        private void QuantizeRow(int r, int worker)
        {
            int n = _n;
            double[] w = _w[worker], err = _err[worker];
            float[] scale = _scale[worker], offset = _offset[worker];
            bool[] ready = _ready[worker];
            Array.Clear(ready);
            var row = _weights.AsSpan(r * n, n);
            for (int i = 0; i < n; i++)
                w[i] = _dead[_order[i]] ? 0 : row[_order[i]];
            Span<byte> dst = Output.AsSpan(r * _rowBytes, _rowBytes);
            int gridBlock = GridBlock(_type);

            for (int i1 = 0; i1 < n; i1 += LazyBlock)
            {
                int i2 = Math.Min(i1 + LazyBlock, n);
                for (int i = i1; i < i2; i++)
                {
                    int column = _order[i];
                    if (!ready[column / gridBlock])
                    {
                        FixGrid(column / gridBlock, w, dst, scale, offset, worker, i, i1, i2, err);
                        ready[column / gridBlock] = true;
                    }
                    int group = column / ScaleGroup(_type);
                    double q = Round(column, w[i], dst, scale[group], offset[group]);
                    double e = (w[i] - q) / _u[i * n + i];
                    err[i - i1] = e;
                    var rest = w.AsSpan(i + 1, i2 - i - 1);
                    TensorPrimitives.MultiplyAdd(_u.AsSpan(i * n + i + 1, i2 - i - 1), -e, rest, rest);
                }
                for (int k = i1; k < i2; k++)
                {
                    var rest = w.AsSpan(i2, n - i2);
                    TensorPrimitives.MultiplyAdd(_u.AsSpan(k * n + i2, n - i2), -err[k - i1], rest, rest);
                }
            }
        }

        /// <summary>
        /// The RTN quantizer on grid block <paramref name="g"/>'s current weights: writes its bytes (header kept,
        /// codes overwritten later) and keeps each 32-column group's value = scale·code − offset.
        /// </summary>
        private void FixGrid(int g, double[] w, Span<byte> dst, float[] scale, float[] offset, int worker, int i, int i1, int i2, double[] err)
        {
            int size = GridBlock(_type);
            var values = _block[worker].AsSpan(0, size);
            for (int c = 0; c < size; c++)
            {
                int p = Position(g * size + c);
                double v = w[p];
                // with act-order a block's columns lie anywhere: those past the lazy block still owe it the updates
                // of the columns quantized so far in it
                if (p >= i2)
                {
                    for (int k = i1; k < i; k++)
                        v -= _u[k * _n + p] * err[k - i1];
                }
                values[c] = (float)v;
            }
            int bytes = (int)GgmlTypeTraits.RowBytes(_type, size);
            var block = dst.Slice(g * bytes, bytes);
            if (SearchScales)
            {
                var weights = _weightsOfBlock[worker].AsSpan(0, size);
                for (int c = 0; c < size; c++)
                {
                    int p = Position(g * size + c);
                    weights[c] = (float)(1 / (_u[p * _n + p] * _u[p * _n + p]));
                }
                var (below, above) = _type == GgmlType.Q4_0 ? (8, 7) : (16, 15);
                float d = SymmetricScaleSearch.Find(values, weights, below, above);
                BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
                scale[g] = d;
                offset[g] = 0;
                return;
            }
            RowQuantizer.Quantize(_type, values, block);
            if (_type == GgmlType.Q6_K)
            {
                float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[208..]));
                for (int j = 0; j < 16; j++)
                {
                    scale[g * 16 + j] = d * (sbyte)block[192 + j];
                    offset[g * 16 + j] = 0;
                }
            }
            else if (_type == GgmlType.Q4_K)
            {
                float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
                float dmin = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[2..]));
                for (int j = 0; j < 8; j++)
                {
                    var (sc, m) = Q4_K.ScaleMin(block.Slice(4, 12), j);
                    scale[g * 8 + j] = d * sc;
                    offset[g * 8 + j] = dmin * m;
                }
            }
            else
            {
                scale[g] = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
                offset[g] = 0;
            }
        }

        private int Position(int column) => _position[column];

        /// <summary>Rounds one weight to its group's grid, stores the code in the row's bytes and returns the value it decodes to.</summary>
        private double Round(int column, double x, Span<byte> dst, float scale, float offset)
        {
            switch (_type)
            {
                case GgmlType.Q4_0:
                {
                    int code = scale == 0 ? 8 : Math.Clamp((int)Math.Round(x / scale, MidpointRounding.ToEven) + 8, 0, 15);
                    var block = dst.Slice(column / 32 * Q4_0.BlockBytes, Q4_0.BlockBytes);
                    int l = column % 32, at = 2 + l % 16;
                    block[at] = l < 16 ? (byte)((block[at] & 0xF0) | code) : (byte)((block[at] & 0x0F) | (code << 4));
                    return scale * (float)(code - 8);
                }
                case GgmlType.Q5_0:
                {
                    int code = scale == 0 ? 16 : Math.Clamp((int)Math.Round(x / scale, MidpointRounding.ToEven) + 16, 0, 31);
                    var block = dst.Slice(column / 32 * Q5_0.BlockBytes, Q5_0.BlockBytes);
                    int l = column % 32, at = 6 + l % 16;
                    block[at] = l < 16 ? (byte)((block[at] & 0xF0) | (code & 0xF)) : (byte)((block[at] & 0x0F) | ((code & 0xF) << 4));
                    uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
                    qh = (qh & ~(1u << l)) | ((uint)(code >> 4) << l);
                    BinaryPrimitives.WriteUInt32LittleEndian(block[2..], qh);
                    return scale * (float)(code - 16);
                }
                case GgmlType.Q6_K:
                {
                    int code = scale == 0 ? 32 : Math.Clamp((int)Math.Round(x / scale, MidpointRounding.ToEven) + 32, 0, 63);
                    // element 128h + 32k + l: low nibble in ql[64h + l + 32(k % 2)] (high half for k ≥ 2), bits 2k of qh[32h + l]
                    int within = column % Q6_K.BlockSize, h = within / 128, k = within % 128 / 32, l = within % 32;
                    var block = dst.Slice(column / Q6_K.BlockSize * Q6_K.BlockBytes, Q6_K.BlockBytes);
                    int at = 64 * h + l + 32 * (k % 2);
                    block[at] = k < 2 ? (byte)((block[at] & 0xF0) | (code & 0xF)) : (byte)((block[at] & 0x0F) | ((code & 0xF) << 4));
                    int hi = 128 + 32 * h + l;
                    block[hi] = (byte)((block[hi] & ~(3 << (2 * k))) | ((code >> 4) << (2 * k)));
                    return scale * (float)(code - 32);
                }
                case GgmlType.Q8_0:
                {
                    int code = scale == 0 ? 0 : Math.Clamp((int)Math.Round(x / scale, MidpointRounding.ToEven), -128, 127);
                    dst[column / 32 * Q8_0.BlockBytes + 2 + column % 32] = (byte)(sbyte)code;
                    return scale * (float)code;
                }
                default:
                {
                    int code = scale == 0 ? 0 : Math.Clamp((int)Math.Round((x + offset) / scale, MidpointRounding.ToEven), 0, 15);
                    int within = column % Q4_K.BlockSize, chunk = within / 64, l = within % 32;
                    int at = column / Q4_K.BlockSize * Q4_K.BlockBytes + 16 + 32 * chunk + l;
                    dst[at] = within % 64 < 32 ? (byte)((dst[at] & 0xF0) | code) : (byte)((dst[at] & 0x0F) | (code << 4));
                    return scale * (float)code - offset;
                }
            }
        }
    }
}
