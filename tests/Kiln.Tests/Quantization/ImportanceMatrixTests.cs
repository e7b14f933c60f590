using Kiln.Models.Llama;
using Kiln.Quantization;
using Kiln.Tests.TestSupport;
using Kiln.Tokenizers;

namespace Kiln.Tests.Quantization;

public sealed class ImportanceMatrixTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-imatrix-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class Recorder : IMatMulInputObserver
    {
        public List<(int Layer, string Name, int Width, int Count, float First)> Calls { get; } = [];

        public void Observe(int layer, string tensorName, ReadOnlySpan<float> rows, int count) =>
            Calls.Add((layer, tensorName, rows.Length / count, count, rows[0]));
    }

    [Fact]
    public void ObserverSeesEveryWeightProductAndChangesNothing()
    {
        var spec = new RandomLlama();
        using var model = LlamaModel.Load(spec.Write(Path.Combine(_dir, "m.gguf")));
        int[] tokens = [1, 40, 41, 42, 43, 44];
        var plain = new float[spec.Vocab];
        var observed = new float[spec.Vocab];
        using (var c = new LlamaContext(model, new LlamaContextOptions { Threads = 1 }))
            c.Evaluate(tokens, plain);
        var recorder = new Recorder();
        using (var c = new LlamaContext(model, new LlamaContextOptions { Threads = 1 }) { MatMulInputObserver = recorder })
            c.Evaluate(tokens, observed);
        Assert.Equal(plain, observed);

        string[] order = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
        var expected = new List<(int, string, int, int)>();
        for (int l = 0; l < spec.Layers; l++)
        {
            foreach (string w in order)
            {
                // the last layer's feed-forward block runs on the one row that needs logits
                int count = l == spec.Layers - 1 && w.StartsWith("ffn", StringComparison.Ordinal) ? 1 : tokens.Length;
                expected.Add((l, $"blk.{l}.{w}.weight", w == "ffn_down" ? spec.Ffn : spec.Dim, count));
            }
        }
        expected.Add((-1, "output.weight", spec.Dim, 1));
        Assert.Equal(expected, recorder.Calls.Select(c => (c.Layer, c.Name, c.Width, c.Count)));
        // q, k and v see one input
        Assert.Equal(recorder.Calls[0].First, recorder.Calls[1].First);
    }

    [Fact]
    public void CollectorSumsSquaresPerColumnAndSkipsTheOutputWeight()
    {
        var collector = new ImportanceMatrixCollector();
        collector.Observe(0, "a", new float[] { 1, 2, 3, -4, 5, 6 }, 2);
        collector.Observe(0, "a", new float[] { 2, 0, 0 }, 1);
        collector.Observe(-1, "output.weight", new float[] { 9, 9 }, 1);
        var m = collector.ToMatrix(3, "text");
        Assert.Equal(["a"], m.Entries.Keys);
        Assert.Equal(2, m.Entries["a"].Calls);
        // means over 3 rows: (1+16+4)/3, (4+25)/3, (9+36)/3
        float[] w = m.ColumnWeights("a", 3)!;
        Assert.Equal(21f / 3, w[0], 5);
        Assert.Equal(29f / 3, w[1], 5);
        Assert.Equal(45f / 3, w[2], 5);
        Assert.Null(m.ColumnWeights("b", 3));
        Assert.Throws<InvalidDataException>(() => m.ColumnWeights("a", 4));
    }

    [Fact]
    public void FileRoundTripsInLlamaCppsLayout()
    {
        var random = new Random(3);
        var entries = new Dictionary<string, ImportanceMatrixEntry>
        {
            ["blk.0.attn_q.weight"] = new(7, Enumerable.Range(0, 64).Select(_ => random.NextSingle()).ToArray()),
            ["blk.0.ffn_down.weight"] = new(5, Enumerable.Range(0, 96).Select(_ => random.NextSingle()).ToArray()),
        };
        string path = Path.Combine(_dir, "im.dat");
        new ImportanceMatrix(entries, 12, "calib.txt").Write(path);
        var back = ImportanceMatrix.Read(path);
        Assert.Equal(12, back.Chunks);
        Assert.Equal("calib.txt", back.Dataset);
        Assert.Equal(entries.Keys.Order(), back.Entries.Keys.Order());
        foreach (var (k, e) in entries)
        {
            Assert.Equal(e.Calls, back.Entries[k].Calls);
            Assert.Equal(e.Values, back.Entries[k].Values);
        }

        // the layout written out by hand: count, then the first entry (names sorted)
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(2, BitConverter.ToInt32(bytes, 0));
        Assert.Equal(19, BitConverter.ToInt32(bytes, 4));
        Assert.Equal("blk.0.attn_q.weight", System.Text.Encoding.ASCII.GetString(bytes, 8, 19));
        Assert.Equal(7, BitConverter.ToInt32(bytes, 27));
        Assert.Equal(64, BitConverter.ToInt32(bytes, 31));
        Assert.Equal(entries["blk.0.attn_q.weight"].Values[0], BitConverter.ToSingle(bytes, 35));
        Assert.Equal(4 + 2 * 12 + 19 + 21 + 4 * (64 + 96) + 8 + 9, bytes.Length);

        File.WriteAllBytes(path, bytes[..40]);
        Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Read(path));
        File.WriteAllText(path, "not an imatrix at all");
        Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Read(path));
    }

    [Fact]
    public void CalibrationRunFeedsChunksOfTheContext()
    {
        var spec = new RandomLlama();
        using var model = LlamaModel.Load(spec.Write(Path.Combine(_dir, "m.gguf")));
        var tokenizer = Tokenizer.FromGguf(model.File);
        var collector = new ImportanceMatrixCollector();
        string text = string.Concat(Enumerable.Repeat("Once upon a time the cat sat. ", 20));
        int chunks = CalibrationRun.Run(model, tokenizer, text, 16, 3, 1, collector);
        Assert.Equal(3, chunks);
        var m = collector.ToMatrix(chunks, "t");
        Assert.Equal(3, m.Entries["blk.0.attn_q.weight"].Calls);
        Assert.Equal(7 * spec.Layers, m.Entries.Count);
        Assert.Throws<ArgumentException>(() => CalibrationRun.Run(model, tokenizer, "cat", 16, 0, 1, collector));
    }
}
