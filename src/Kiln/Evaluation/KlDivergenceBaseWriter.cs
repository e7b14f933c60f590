using System.Runtime.InteropServices;
using Kiln.Tensors;

namespace Kiln.Evaluation;

/// <summary>
/// Saves a base model's scored distributions in llama-perplexity's --kl-divergence-base format, so files
/// from either tool can be compared by either: "_logits_", int32 n_ctx, int32 n_vocab, int32 n_chunk, the
/// n_chunk·n_ctx evaluated tokens (int32), then per chunk n_ctx−1−n_ctx/2 records of nv = 2·⌈n_vocab/2⌉ + 4
/// uint16: float scale, float min_log_prob, then each token's log-probability quantized to 16 bits over
/// [max−16, max] of the logits (see <see cref="EncodeRow"/>). Written to a temporary file renamed by
/// <see cref="Commit"/>, so an interrupted run leaves no truncated base file.
/// </summary>
public sealed class KlDivergenceBaseWriter : IScoredLogitsObserver, IDisposable
{
    public static ReadOnlySpan<byte> Magic => "_logits_"u8;

    private readonly string _path;
    private readonly string _temp;
    private readonly FileStream _stream;
    private readonly int _vocab;
    private readonly ushort[] _records;
    private bool _committed;

    public KlDivergenceBaseWriter(string path, int contextLength, int vocab, ReadOnlySpan<int> tokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (tokens.Length == 0 || tokens.Length % contextLength != 0)
            throw new ArgumentException($"{tokens.Length} tokens are not a whole number of {contextLength}-token chunks", nameof(tokens));
        _path = Path.GetFullPath(path);
        _temp = Path.Combine(Path.GetDirectoryName(_path)!, $".{Path.GetFileName(_path)}.{Guid.NewGuid():N}.tmp");
        _vocab = vocab;
        int scored = contextLength - 1 - contextLength / 2;
        _records = new ushort[scored * RecordLength(vocab)];
        _stream = new FileStream(_temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        _stream.Write(Magic);
        Span<int> header = [contextLength, vocab, tokens.Length / contextLength];
        _stream.Write(MemoryMarshal.AsBytes(header));
        _stream.Write(MemoryMarshal.AsBytes(tokens));
    }

    /// <summary>uint16 per saved row: 4 for the two floats, the vocabulary rounded up to even.</summary>
    public static int RecordLength(int vocab) => 2 * ((vocab + 1) / 2) + 4;

    public void OnChunk(int chunk, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab)
    {
        if (vocab != _vocab)
            throw new ArgumentException($"rows of {vocab} logits, the base file holds {_vocab}", nameof(vocab));
        int nv = RecordLength(vocab);
        if (targets.Length * nv != _records.Length)
            throw new ArgumentException($"{targets.Length} scored rows per chunk, expected {_records.Length / nv}", nameof(targets));
        for (int r = 0; r < targets.Length; r++)
            EncodeRow(logits.Slice(r * vocab, vocab), _records.AsSpan(r * nv, nv));
        _stream.Write(MemoryMarshal.AsBytes(_records.AsSpan()));
    }

    /// <summary>
    /// llama-perplexity's log_softmax for the base file: logits at or below max−16 count as max−16; scale
    /// spans [min, max] in 65535 steps; min_log_prob is the log-probability of the lowest level. A token's
    /// log-probability is then scale·q + min_log_prob.
    /// </summary>
    public static void EncodeRow(ReadOnlySpan<float> logits, Span<ushort> record)
    {
        float max = logits[0], min = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            max = Math.Max(max, logits[i]);
            min = Math.Min(min, logits[i]);
        }
        min = Math.Max(min, max - 16);
        double sumExp = 0;
        for (int i = 0; i < logits.Length; i++)
            sumExp += MathF.Exp(logits[i] - max);
        float logSumExp = (float)Math.Log(sumExp);
        float minLogProb = min - max - logSumExp;
        float scale = (max - min) / 65535f;
        MemoryMarshal.Write(MemoryMarshal.AsBytes(record[..2]), scale);
        MemoryMarshal.Write(MemoryMarshal.AsBytes(record.Slice(2, 2)), minLogProb);
        Span<ushort> q = record[4..];
        q.Clear();
        if (scale != 0)
        {
            float inverse = 1 / scale;
            for (int i = 0; i < logits.Length; i++)
                q[i] = logits[i] > min ? (ushort)KQuantSearch.NearestInt(inverse * (logits[i] - min)) : (ushort)0;
        }
    }

    /// <summary>Flushes to disk and moves the file into place; without it, Dispose deletes the partial file.</summary>
    public void Commit()
    {
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(_temp, _path, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        _stream.Dispose();
        if (!_committed)
        {
            try
            {
                File.Delete(_temp);
            }
            catch (IOException)
            {
                // best effort: the failure that got us here matters more
            }
        }
    }
}
