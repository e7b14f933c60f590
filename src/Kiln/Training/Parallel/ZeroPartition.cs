using Kiln.Training.Models;

namespace Kiln.Training.Parallel;

/// <summary>
/// How ZeRO splits the flat parameter buffer among N ranks: every unit (embedding, block, head) is cut into N
/// equal blocks of ⌈length / N⌉ elements, the last padded with zeros, and rank r owns block r of every unit. A
/// unit's gather and reduce-scatter are then single collectives of equal blocks, and a rank's shard is the
/// concatenation of its blocks: S = Σ ⌈length / N⌉ elements, Ψ/N plus at most one element per unit.
/// </summary>
public sealed class ZeroPartition
{
    private readonly UnitShard[] _units;
    private readonly ShardSegment[] _segments;

    public ZeroPartition(ParameterUnit[] units, IReadOnlyList<ParameterTensor> tensors, int rank, int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        if ((uint)rank >= (uint)size)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"no rank {rank} among {size}");
        (Rank, Size) = (rank, size);
        _units = new UnitShard[units.Length];
        int shard = 0;
        foreach (var u in units)
        {
            int block = (u.Length + size - 1) / size;
            int first = Math.Min(u.Length, rank * block);
            int count = Math.Min(u.Length, first + block) - first;
            _units[u.Index] = new UnitShard(u, block, shard, u.Offset + first, count);
            shard = checked(shard + block);
            ParameterCount += u.Length;
        }
        ShardLength = shard;
        _segments = Segment(_units, tensors);
    }

    public int Rank { get; }
    public int Size { get; }

    /// <summary>Ψ: elements of the whole model.</summary>
    public long ParameterCount { get; }

    /// <summary>S: elements of one rank's shard, padding included (the same on every rank).</summary>
    public int ShardLength { get; }

    /// <summary>This rank's block of each unit, by unit index.</summary>
    public ReadOnlySpan<UnitShard> Units => _units;

    /// <summary>
    /// This rank's owned elements cut at tensor boundaries, so each run has one weight-decay setting: shard
    /// boundaries fall inside tensors and decay is decided per element by the tensor it belongs to.
    /// </summary>
    public ReadOnlySpan<ShardSegment> Segments => _segments;

    private static ShardSegment[] Segment(UnitShard[] units, IReadOnlyList<ParameterTensor> tensors)
    {
        var segments = new List<ShardSegment>();
        foreach (var s in units)
        {
            int start = s.GlobalOffset, end = s.GlobalOffset + s.Count;
            foreach (var t in tensors)
            {
                int a = Math.Max(start, t.Offset), b = Math.Min(end, t.Offset + t.Length);
                if (a < b)
                    segments.Add(new ShardSegment(a, s.ShardOffset + (a - start), b - a, t.Decays));
            }
        }
        return segments.ToArray();
    }

    /// <summary>
    /// One rank's block of a unit: BlockLength elements at ShardOffset of the shard, of which the first Count are the
    /// model's elements [GlobalOffset, GlobalOffset + Count) and the rest padding.
    /// </summary>
    public readonly record struct UnitShard(ParameterUnit Unit, int BlockLength, int ShardOffset, int GlobalOffset, int Count)
    {
        /// <summary>Elements of the unit's padded gather buffer: N blocks.</summary>
        public int PaddedLength(int ranks) => BlockLength * ranks;
    }

    /// <summary>A run of owned elements inside one tensor: flat index, shard index, length, decay.</summary>
    public readonly record struct ShardSegment(int GlobalOffset, int ShardOffset, int Length, bool Decays);
}
