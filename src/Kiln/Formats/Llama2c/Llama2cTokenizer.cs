using System.Buffers.Binary;

namespace Kiln.Formats.Llama2c;

/// <summary>
/// A llama2.c tokenizer.bin: int32 max_token_length, then for each of vocab_size tokens
/// { float32 score; int32 len; len bytes of piece }. The file does not store its own vocab_size;
/// it comes from the checkpoint that goes with it.
/// Pieces are kept as raw bytes exactly as stored (llama2.c writes spaces as ' ', not SentencePiece's U+2581).
/// </summary>
public sealed class Llama2cTokenizer
{
    // A 256k-token vocabulary with generous pieces is a few MB; anything near this is not a tokenizer.bin.
    private const long MaxFileBytes = 1L << 30;

    private readonly byte[][] _pieces;
    private readonly float[] _scores;

    public int MaxTokenLength { get; }

    public int Count => _pieces.Length;

    public IReadOnlyList<float> Scores => _scores;

    private Llama2cTokenizer(int maxTokenLength, byte[][] pieces, float[] scores)
    {
        MaxTokenLength = maxTokenLength;
        _pieces = pieces;
        _scores = scores;
    }

    /// <summary>The stored bytes of token <paramref name="id"/>.</summary>
    public ReadOnlySpan<byte> GetPiece(int id) => _pieces[id];

    public float GetScore(int id) => _scores[id];

    /// <summary>Reads a tokenizer.bin holding exactly <paramref name="vocabSize"/> tokens.</summary>
    public static Llama2cTokenizer Read(string path, int vocabSize)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        long length = new FileInfo(path).Length;
        if (length > MaxFileBytes)
            throw new Llama2cFormatException($"{path}: {length} bytes is far too large for a llama2.c tokenizer.bin.");
        try
        {
            return Parse(File.ReadAllBytes(path), vocabSize);
        }
        catch (Llama2cFormatException e)
        {
            throw new Llama2cFormatException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Parses tokenizer.bin contents holding exactly <paramref name="vocabSize"/> tokens.</summary>
    public static Llama2cTokenizer Parse(ReadOnlySpan<byte> data, int vocabSize)
    {
        if (vocabSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocab size must be positive");
        if (data.Length < sizeof(int))
            throw new Llama2cFormatException($"llama2.c tokenizer is {data.Length} bytes, too short for its max_token_length header.");
        int maxTokenLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxTokenLength < 0)
            throw new Llama2cFormatException($"llama2.c tokenizer: max_token_length is {maxTokenLength}; it must not be negative.");

        // Each entry takes at least 8 bytes, so a vocab_size the data cannot hold is rejected before allocating for it.
        long minimum = sizeof(int) + 8L * vocabSize;
        if (data.Length < minimum)
            throw new Llama2cFormatException(
                $"llama2.c tokenizer is {data.Length} bytes, too short for {vocabSize} tokens (at least {minimum} bytes); truncated, or the wrong tokenizer for this model?");

        var pieces = new byte[vocabSize][];
        var scores = new float[vocabSize];
        int pos = sizeof(int);
        for (int id = 0; id < vocabSize; id++)
        {
            if (data.Length - pos < 8)
                throw new Llama2cFormatException($"llama2.c tokenizer ends inside the entry of token {id} of {vocabSize} (offset {pos}).");
            scores[id] = BinaryPrimitives.ReadSingleLittleEndian(data[pos..]);
            int len = BinaryPrimitives.ReadInt32LittleEndian(data[(pos + 4)..]);
            pos += 8;
            if (len < 0)
                throw new Llama2cFormatException($"llama2.c tokenizer: token {id} has negative length {len} (offset {pos - 4}).");
            if (len > data.Length - pos)
                throw new Llama2cFormatException(
                    $"llama2.c tokenizer: token {id} claims {len} bytes but only {data.Length - pos} remain (offset {pos - 4}); truncated or corrupt.");
            pieces[id] = data.Slice(pos, len).ToArray();
            pos += len;
        }
        if (pos != data.Length)
            throw new Llama2cFormatException(
                $"llama2.c tokenizer has {data.Length - pos} bytes left after {vocabSize} tokens; it holds more tokens than the model's vocab_size (wrong tokenizer for this model?).");
        return new Llama2cTokenizer(maxTokenLength, pieces, scores);
    }
}
