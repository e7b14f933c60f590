using System.Buffers.Binary;

namespace Kiln.Formats.Llama2c;

/// <summary>
/// The 7-int32 header of a llama2.c checkpoint (run.c's Config), validated.
/// On disk a negative vocab_size flags an unshared classifier; here <see cref="VocabSize"/> is always positive
/// and <see cref="SharedClassifier"/> carries the flag.
/// </summary>
public sealed record Llama2cConfig
{
    public const int HeaderBytes = 7 * sizeof(int);

    public int Dim { get; }
    public int HiddenDim { get; }
    public int LayerCount { get; }
    public int HeadCount { get; }
    public int KvHeadCount { get; }
    public int VocabSize { get; }
    public int SeqLen { get; }

    /// <summary>True when the output classifier reuses the token embedding (positive vocab_size on disk).</summary>
    public bool SharedClassifier { get; }

    public int HeadSize => Dim / HeadCount;

    /// <summary>Width of the key/value projections: dim * n_kv_heads / n_heads.</summary>
    public int KvDim => HeadSize * KvHeadCount;

    /// <summary>Exact size a checkpoint with this header must have, weights and the legacy RoPE tables included.</summary>
    public long ExpectedFileSize { get; }

    public Llama2cConfig(int dim, int hiddenDim, int layerCount, int headCount, int kvHeadCount, int vocabSize, int seqLen, bool sharedClassifier)
    {
        RequirePositive(dim, "dim");
        RequirePositive(hiddenDim, "hidden_dim");
        RequirePositive(layerCount, "n_layers");
        RequirePositive(headCount, "n_heads");
        RequirePositive(kvHeadCount, "n_kv_heads");
        RequirePositive(vocabSize, "vocab_size");
        RequirePositive(seqLen, "seq_len");
        if (dim % headCount != 0)
            throw new Llama2cFormatException($"llama2.c header: n_heads ({headCount}) does not divide dim ({dim}).");
        if (kvHeadCount > headCount || headCount % kvHeadCount != 0)
            throw new Llama2cFormatException($"llama2.c header: n_kv_heads ({kvHeadCount}) does not divide n_heads ({headCount}).");
        // RoPE rotates pairs of a head's dimensions, and the legacy freq_cis tables hold head_size/2 entries per position.
        if ((dim / headCount) % 2 != 0)
            throw new Llama2cFormatException($"llama2.c header: head size dim/n_heads = {dim / headCount} is odd; RoPE needs an even head size.");

        Dim = dim;
        HiddenDim = hiddenDim;
        LayerCount = layerCount;
        HeadCount = headCount;
        KvHeadCount = kvHeadCount;
        VocabSize = vocabSize;
        SeqLen = seqLen;
        SharedClassifier = sharedClassifier;
        ExpectedFileSize = ComputeFileSize();
    }

    /// <summary>Parses and validates the header; <paramref name="header"/> must hold at least <see cref="HeaderBytes"/> bytes.</summary>
    public static Llama2cConfig Parse(ReadOnlySpan<byte> header)
    {
        if (header.Length < HeaderBytes)
            throw new Llama2cFormatException($"llama2.c checkpoint is {header.Length} bytes, shorter than its {HeaderBytes}-byte header.");
        int dim = BinaryPrimitives.ReadInt32LittleEndian(header);
        int hiddenDim = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        int layers = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        int heads = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        int kvHeads = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
        int vocab = BinaryPrimitives.ReadInt32LittleEndian(header[20..]);
        int seqLen = BinaryPrimitives.ReadInt32LittleEndian(header[24..]);
        if (vocab == int.MinValue)
            throw new Llama2cFormatException($"llama2.c header: vocab_size {vocab} is out of range.");
        return new Llama2cConfig(dim, hiddenDim, layers, heads, kvHeads, Math.Abs(vocab), seqLen, sharedClassifier: vocab > 0);
    }

    /// <summary>The header as llama2.c writes it (negative vocab_size for an unshared classifier).</summary>
    public void WriteTo(Span<byte> destination)
    {
        if (destination.Length < HeaderBytes)
            throw new ArgumentException($"need {HeaderBytes} bytes", nameof(destination));
        BinaryPrimitives.WriteInt32LittleEndian(destination, Dim);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], HiddenDim);
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], LayerCount);
        BinaryPrimitives.WriteInt32LittleEndian(destination[12..], HeadCount);
        BinaryPrimitives.WriteInt32LittleEndian(destination[16..], KvHeadCount);
        BinaryPrimitives.WriteInt32LittleEndian(destination[20..], SharedClassifier ? VocabSize : -VocabSize);
        BinaryPrimitives.WriteInt32LittleEndian(destination[24..], SeqLen);
    }

    /// <summary>
    /// The weight arrays in file order, per-layer ones split into one entry per layer, classifier last when unshared.
    /// The legacy freq_cis_real/imag tables between the final norm and the classifier are skipped.
    /// </summary>
    public IReadOnlyList<Llama2cTensor> Layout()
    {
        var tensors = new List<Llama2cTensor>(4 + 9 * LayerCount);
        long offset = HeaderBytes;

        void Add(Llama2cWeight weight, int layer, int rows, int columns)
        {
            var tensor = new Llama2cTensor(weight, layer, rows, columns, offset);
            tensors.Add(tensor);
            offset += tensor.ByteLength;
        }

        void AddStacked(Llama2cWeight weight, int rows, int columns)
        {
            for (int layer = 0; layer < LayerCount; layer++)
                Add(weight, layer, rows, columns);
        }

        Add(Llama2cWeight.TokenEmbedding, -1, VocabSize, Dim);
        AddStacked(Llama2cWeight.AttentionNorm, 1, Dim);
        AddStacked(Llama2cWeight.Query, Dim, Dim);
        AddStacked(Llama2cWeight.Key, KvDim, Dim);
        AddStacked(Llama2cWeight.Value, KvDim, Dim);
        AddStacked(Llama2cWeight.AttentionOutput, Dim, Dim);
        AddStacked(Llama2cWeight.FeedForwardNorm, 1, Dim);
        AddStacked(Llama2cWeight.FeedForwardGate, HiddenDim, Dim);
        AddStacked(Llama2cWeight.FeedForwardDown, Dim, HiddenDim);
        AddStacked(Llama2cWeight.FeedForwardUp, HiddenDim, Dim);
        Add(Llama2cWeight.FinalNorm, -1, 1, Dim);
        offset += RopeTableBytes;
        if (!SharedClassifier)
            Add(Llama2cWeight.Classifier, -1, VocabSize, Dim);
        return tensors;
    }

    // freq_cis_real and freq_cis_imag, [seq_len, head_size/2] each: written by old exporters, unused by run.c.
    private long RopeTableBytes => checked(2L * SeqLen * (HeadSize / 2) * sizeof(float));

    private long ComputeFileSize()
    {
        // Every factor is a positive int32, so single products fit in a long; sums over hostile headers
        // (e.g. n_layers * hidden * dim near 2^93) need the overflow check.
        try
        {
            checked
            {
                long dim = Dim, hidden = HiddenDim, layers = LayerCount, vocab = VocabSize, kvDim = KvDim;
                long perLayer = dim + dim * dim + 2 * kvDim * dim + dim * dim + dim + 3 * hidden * dim;
                long floats = vocab * dim + layers * perLayer + dim + (SharedClassifier ? 0 : vocab * dim);
                return HeaderBytes + floats * sizeof(float) + RopeTableBytes;
            }
        }
        catch (OverflowException)
        {
            throw new Llama2cFormatException(
                $"llama2.c header describes an impossibly large model (dim {Dim}, hidden_dim {HiddenDim}, n_layers {LayerCount}, vocab_size {VocabSize}, seq_len {SeqLen}).");
        }
    }

    private static void RequirePositive(int value, string field)
    {
        if (value <= 0)
            throw new Llama2cFormatException($"llama2.c header: {field} is {value}; it must be positive.");
    }

    public override string ToString() =>
        $"dim {Dim}, hidden_dim {HiddenDim}, n_layers {LayerCount}, n_heads {HeadCount}, n_kv_heads {KvHeadCount}, " +
        $"vocab_size {VocabSize}, seq_len {SeqLen}, {(SharedClassifier ? "shared" : "separate")} classifier";
}
