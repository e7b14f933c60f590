using System.Runtime.InteropServices;

namespace Kiln.Evaluation;

/// <summary>
/// Reads a base file written by <see cref="KlDivergenceBaseWriter"/> or by llama-perplexity
/// --kl-divergence-base: the header and tokens at open (checked against the file's length), then one
/// chunk of records at a time.
/// </summary>
public sealed class KlDivergenceBaseReader : IDisposable
{
    private const int HeaderBytes = 8 + 3 * sizeof(int);

    private readonly FileStream _stream;

    private KlDivergenceBaseReader(string path, FileStream stream, int contextLength, int vocab, int[] tokens)
    {
        Path = path;
        _stream = stream;
        ContextLength = contextLength;
        Vocab = vocab;
        Tokens = tokens;
    }

    public string Path { get; }

    public int ContextLength { get; }

    public int Vocab { get; }

    public int Chunks => Tokens.Length / ContextLength;

    /// <summary>The evaluated tokens, Chunks × ContextLength (BOS is put in each chunk's first position when evaluating).</summary>
    public int[] Tokens { get; }

    public int RowsPerChunk => ContextLength - 1 - ContextLength / 2;

    public int RecordLength => KlDivergenceBaseWriter.RecordLength(Vocab);

    /// <summary>InvalidDataException when the file is not a base file or its length does not match its header.</summary>
    public static KlDivergenceBaseReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        try
        {
            Span<byte> header = stackalloc byte[HeaderBytes];
            if (stream.Length < HeaderBytes || stream.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false) < HeaderBytes
                || !header[..8].SequenceEqual(KlDivergenceBaseWriter.Magic))
                throw new InvalidDataException($"{path} is not a KL-divergence base file (no '_logits_' header)");
            var fields = MemoryMarshal.Cast<byte, int>(header[8..]);
            int n = fields[0], vocab = fields[1], chunks = fields[2];
            if (n < 4 || n % 2 != 0 || vocab < 1 || chunks < 1)
                throw new InvalidDataException($"{path}: implausible header (n_ctx {n}, n_vocab {vocab}, n_chunk {chunks})");
            long rows = (long)chunks * (n - 1 - n / 2);
            long expected = HeaderBytes + 4L * chunks * n + 2L * rows * KlDivergenceBaseWriter.RecordLength(vocab);
            if (stream.Length != expected)
                throw new InvalidDataException(
                    $"{path} is {stream.Length} bytes, but n_ctx {n}, n_vocab {vocab} and {chunks} chunks need {expected} (truncated or not a base file?)");
            var tokens = new int[(long)chunks * n];
            stream.ReadExactly(MemoryMarshal.AsBytes(tokens.AsSpan()));
            return new KlDivergenceBaseReader(path, stream, n, vocab, tokens);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads the next chunk's RowsPerChunk × RecordLength values.</summary>
    public void ReadChunk(Span<ushort> records)
    {
        if (records.Length != RowsPerChunk * RecordLength)
            throw new ArgumentException($"a chunk is {RowsPerChunk * RecordLength} values, got room for {records.Length}", nameof(records));
        _stream.ReadExactly(MemoryMarshal.AsBytes(records));
    }

    public void Dispose() => _stream.Dispose();
}
