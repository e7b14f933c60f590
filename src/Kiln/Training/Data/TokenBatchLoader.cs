namespace Kiln.Training.Data;

/// <summary>
/// Batches of (input, target) sequences from a token stream. The stream is cut into non-overlapping windows of
/// seqLen + 1 tokens starting every seqLen tokens; sequential order walks them in file order, shuffled order in a
/// permutation drawn from (seed, epoch) alone. The position is two numbers, so a checkpoint restores it exactly
/// and a resumed run sees the same batches.
/// </summary>
public sealed class TokenBatchLoader
{
    private readonly TokenStream _stream;
    private readonly ulong _seed;
    private int[] _permutation = [];
    private long _permutationEpoch = -1;

    public TokenBatchLoader(TokenStream stream, int batch, int seqLen, bool shuffle, ulong seed)
    {
        if (batch <= 0 || seqLen <= 0)
            throw new ArgumentException($"batch {batch} and sequence length {seqLen} must be positive");
        Windows = (stream.Count - 1) / seqLen;
        if (Windows < 1)
            throw new InvalidDataException(
                $"{stream.Path} holds {stream.Count} tokens; a sequence of {seqLen} needs at least {seqLen + 1}");
        if (shuffle && Windows > Array.MaxLength)
            throw new InvalidDataException($"{stream.Path}: too many windows to shuffle ({Windows})");
        (_stream, Batch, SequenceLength, Shuffle, _seed) = (stream, batch, seqLen, shuffle, seed);
    }

    public int Batch { get; }
    public int SequenceLength { get; }
    public bool Shuffle { get; }
    public long Windows { get; }
    public LoaderPosition Position { get; set; }

    /// <summary>Fills inputs and targets [batch·seqLen] and advances the position by batch windows.</summary>
    public void Next(Span<int> inputs, Span<int> targets)
    {
        int t = SequenceLength;
        if (inputs.Length != Batch * t || targets.Length != Batch * t)
            throw new ArgumentException($"expected {Batch * t} tokens per buffer");
        for (int b = 0; b < Batch; b++)
        {
            var (epoch, index) = Position;
            long start = Window(epoch, index) * t;
            _stream.Read(start, inputs.Slice(b * t, t));
            _stream.Read(start + 1, targets.Slice(b * t, t));
            Position = index + 1 == Windows ? new LoaderPosition(epoch + 1, 0) : new LoaderPosition(epoch, index + 1);
        }
    }

    /// <summary>
    /// Advances by batch windows as <see cref="Next"/> does but reads only windows [first, first + count) of them: a
    /// data-parallel rank's share of the global batch, so D ranks together see exactly what one process with the
    /// global batch would.
    /// </summary>
    public void NextShard(Span<int> inputs, Span<int> targets, int first, int count)
    {
        int t = SequenceLength;
        if (first < 0 || count <= 0 || first + count > Batch)
            throw new ArgumentOutOfRangeException(nameof(count), $"windows [{first}, {first + count}) do not lie in a batch of {Batch}");
        if (inputs.Length != count * t || targets.Length != count * t)
            throw new ArgumentException($"expected {count * t} tokens per buffer");
        for (int b = 0; b < Batch; b++)
        {
            var (epoch, index) = Position;
            if (b >= first && b < first + count)
            {
                long start = Window(epoch, index) * t;
                _stream.Read(start, inputs.Slice((b - first) * t, t));
                _stream.Read(start + 1, targets.Slice((b - first) * t, t));
            }
            Position = index + 1 == Windows ? new LoaderPosition(epoch + 1, 0) : new LoaderPosition(epoch, index + 1);
        }
    }

    private long Window(long epoch, long index)
    {
        if (!Shuffle)
            return index;
        if (epoch != _permutationEpoch)
        {
            // Fisher–Yates from a generator seeded by (seed, epoch): any epoch's order can be rebuilt on resume
            var rng = new TrainingRandom(_seed ^ (0x9E3779B97F4A7C15UL * (ulong)(epoch + 1)));
            if (_permutation.Length != Windows)
                _permutation = new int[Windows];
            for (int i = 0; i < _permutation.Length; i++)
                _permutation[i] = i;
            for (int i = _permutation.Length - 1; i > 0; i--)
            {
                int j = rng.NextInt(i + 1);
                (_permutation[i], _permutation[j]) = (_permutation[j], _permutation[i]);
            }
            _permutationEpoch = epoch;
        }
        return _permutation[index];
    }
}
