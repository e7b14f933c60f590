using System.Buffers.Binary;
using System.Text;

namespace Kiln.Tests.Formats.Llama2c;

/// <summary>
/// Writes small llama2.c checkpoints and tokenizers with seeded random contents, laid out independently of the
/// reader under test: straight from run.c's memory_map_weights order, stacked per-layer arrays included.
/// </summary>
internal sealed class Llama2cSampleFiles : IDisposable
{
    public string Directory { get; }

    public Llama2cSampleFiles()
    {
        Directory = Path.Combine(Path.GetTempPath(), "kiln-llama2c-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string PathOf(string name) => Path.Combine(Directory, name);

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }

    /// <summary>Weights of a sample model as llama2.c stores them: per-layer arrays stacked over layers.</summary>
    public sealed class Model
    {
        public required int Dim, Hidden, Layers, Heads, KvHeads, Vocab, SeqLen;
        public required bool Shared;
        public required float[] Embedding, RmsAtt, Wq, Wk, Wv, Wo, RmsFfn, W1, W2, W3, RmsFinal, RopeTables;
        public float[]? Wcls;

        public int KvDim => Dim / Heads * KvHeads;
    }

    public static Model RandomModel(int dim = 16, int hidden = 24, int layers = 2, int heads = 4, int kvHeads = 2,
        int vocab = 40, int seqLen = 8, bool shared = true, int seed = 1)
    {
        var rng = new Random(seed);
        float[] R(int n)
        {
            var a = new float[n];
            for (int i = 0; i < n; i++)
                a[i] = (float)(rng.NextDouble() * 2 - 1);
            return a;
        }
        int kvDim = dim / heads * kvHeads;
        int headSize = dim / heads;
        return new Model
        {
            Dim = dim, Hidden = hidden, Layers = layers, Heads = heads, KvHeads = kvHeads, Vocab = vocab, SeqLen = seqLen, Shared = shared,
            Embedding = R(vocab * dim),
            RmsAtt = R(layers * dim),
            Wq = R(layers * dim * dim),
            Wk = R(layers * kvDim * dim),
            Wv = R(layers * kvDim * dim),
            Wo = R(layers * dim * dim),
            RmsFfn = R(layers * dim),
            W1 = R(layers * hidden * dim),
            W2 = R(layers * dim * hidden),
            W3 = R(layers * hidden * dim),
            RmsFinal = R(dim),
            RopeTables = R(2 * seqLen * (headSize / 2)),
            Wcls = shared ? null : R(vocab * dim),
        };
    }

    public static byte[] CheckpointBytes(Model m)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        foreach (int v in new[] { m.Dim, m.Hidden, m.Layers, m.Heads, m.KvHeads, m.Shared ? m.Vocab : -m.Vocab, m.SeqLen })
            w.Write(v);
        foreach (var array in new[] { m.Embedding, m.RmsAtt, m.Wq, m.Wk, m.Wv, m.Wo, m.RmsFfn, m.W1, m.W2, m.W3, m.RmsFinal, m.RopeTables })
            foreach (float f in array)
                w.Write(f);
        if (m.Wcls is not null)
            foreach (float f in m.Wcls)
                w.Write(f);
        w.Flush();
        return ms.ToArray();
    }

    public static byte[] Header(int dim, int hidden, int layers, int heads, int kvHeads, int vocab, int seqLen)
    {
        var bytes = new byte[28];
        int[] values = [dim, hidden, layers, heads, kvHeads, vocab, seqLen];
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    /// <summary>A llama2.c-style vocabulary: unk, "\n&lt;s&gt;\n", "\n&lt;/s&gt;\n", 256 byte pieces, then merged pieces.</summary>
    public static (string[] Pieces, float[] Scores) SampleVocabulary(int vocab)
    {
        var pieces = new string[vocab];
        var scores = new float[vocab];
        string[] words = ["a", " b", " the", "ing", " Once", "é", " 日本", "x y"];
        for (int i = 0; i < vocab; i++)
        {
            pieces[i] = i switch
            {
                0 => "<unk>",
                1 => "\n<s>\n",
                2 => "\n</s>\n",
                _ when i < 3 + 256 => $"<0x{i - 3:X2}>",
                _ => words[(i - 259) % words.Length] + (i - 259 >= words.Length ? (i - 259).ToString() : ""),
            };
            scores[i] = i < 259 ? 0f : -(i - 259);
        }
        return (pieces, scores);
    }

    public static byte[] TokenizerBytes(IReadOnlyList<byte[]> pieces, IReadOnlyList<float> scores, int? maxTokenLength = null)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        w.Write(maxTokenLength ?? pieces.Max(p => p.Length));
        for (int i = 0; i < pieces.Count; i++)
        {
            w.Write(scores[i]);
            w.Write(pieces[i].Length);
            w.Write(pieces[i]);
        }
        w.Flush();
        return ms.ToArray();
    }

    public static byte[] TokenizerBytes(IReadOnlyList<string> pieces, IReadOnlyList<float> scores) =>
        TokenizerBytes(pieces.Select(p => Encoding.UTF8.GetBytes(p)).ToArray(), scores);
}
