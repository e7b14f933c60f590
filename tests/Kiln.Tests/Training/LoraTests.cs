using System.Runtime.InteropServices;
using Kiln.Compute;
using Kiln.Formats.Gguf;
using Kiln.Models;
using Kiln.Models.Llama;
using Kiln.Models.Lora;
using Kiln.Tensors;
using Kiln.Tests.TestSupport;
using Kiln.Threading;
using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Export;
using Kiln.Training.Lora;
using Kiln.Training.Ops;
using static Kiln.Tests.Training.GradientCheck;

namespace Kiln.Tests.Training;

/// <summary>LoRA: the frozen-base op's gradients, finetuning a tiny GGUF model, the adapter file, inference with adapters, merging.</summary>
public sealed class LoraTests : IDisposable
{
    private readonly WorkerPool _pool = new(3);
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-lora-").FullName;

    public void Dispose()
    {
        _pool.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>A one-tensor GGUF holding W [rows × cols] of the given type; returns the file and the W a reference sees (dequantized).</summary>
    private (GgufFile File, WeightMatrix W, double[] Reference) Weight(GgmlType type, int rows, int cols, int seed)
    {
        var values = Random(rows * cols, seed).Select(v => (float)v).ToArray();
        int rowBytes = (int)GgmlTypeTraits.RowBytes(type, cols);
        var bytes = new byte[rowBytes * rows];
        for (int r = 0; r < rows; r++)
        {
            var dst = bytes.AsSpan(r * rowBytes, rowBytes);
            var src = values.AsSpan(r * cols, cols);
            if (type == GgmlType.F32) MemoryMarshal.AsBytes(src).CopyTo(dst);
            else Q8_0.QuantizeScalar(src, dst);
            RowKernels.Dequantize(type, dst, src);
        }
        var w = new GgufWriter();
        w.SetMetadata("general.architecture", GgufValue.FromString("test"));
        w.AddTensor("w", type, [cols, rows], bytes);
        string path = P($"w{seed}.gguf");
        w.Write(path);
        var file = GgufFile.Open(path);
        return (file, WeightMatrix.FromGguf(file, "w", cols, rows), values.Select(v => (double)v).ToArray());
    }

    [Theory]
    [InlineData(GgmlType.F32, 13)]
    [InlineData(GgmlType.Q8_0, 64)]
    public void FrozenLoraLinearGradients(GgmlType type, int inDim)
    {
        const int rows = 5, outDim = 19, rank = 3, stride = 25, offset = 4;
        const double scale = 0.7;
        var (file, w, wRef) = Weight(type, outDim, inDim, 11);
        using var _ = file;
        var op = new FrozenLoraLinear<double>(_pool);
        double[] x = Random(rows * inDim, 1), a = Random(rank * inDim, 2), b = Random(outDim * rank, 3), g = Random(rows * stride, 4);
        double[] y = new double[rows * stride], u = new double[rows * rank], du = new double[rows * rank];
        double[] da = new double[a.Length], db = new double[b.Length];
        var term = new LoraTerm<double>(a, b, da, db, u, du, rank, scale);
        double Loss()
        {
            op.Forward(w, x, y, rows, stride, offset, term);
            double s = 0;
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < outDim; j++)
                    s += y[i * stride + offset + j] * g[i * stride + offset + j];
            return s;
        }
        Loss();
        // forward against the formula written out: y = x·Wᵀ + scale·(x·Aᵀ)·Bᵀ, columns outside [offset, offset+out) untouched
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < outDim; j++)
            {
                double expected = 0;
                for (int k = 0; k < inDim; k++)
                    expected += x[i * inDim + k] * wRef[j * inDim + k];
                for (int q = 0; q < rank; q++)
                {
                    double xa = 0;
                    for (int k = 0; k < inDim; k++)
                        xa += x[i * inDim + k] * a[q * inDim + k];
                    expected += scale * xa * b[j * rank + q];
                }
                Assert.Equal(expected, y[i * stride + offset + j], 1e-9);
            }
            Assert.Equal(0.0, y[i * stride]);
        }
        double[] dx = new double[x.Length];
        op.Backward(w, x, g, dx, rows, stride, offset, term);
        Verify("dx", x, dx, Loss);
        Verify("dA", a, da, Loss);
        Verify("dB", b, db, Loss);
    }

    private string BaseModel(GgmlType type = GgmlType.F32, int dim = 64, string name = "base.gguf") =>
        new RandomLlama { WeightType = type, Dim = dim, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 96, Context = 64 }.Write(P(name));

    private static float[] Logits(LlamaModel model, int[] tokens, IReadOnlyList<LoraAdapter>? adapters = null)
    {
        using var ctx = new LlamaContext(model, new LlamaContextOptions { ContextLength = 64, MaxBatch = 64, Threads = 2, KvCacheType = KvCacheType.F32, Adapters = adapters ?? [] });
        var logits = new float[tokens.Length * model.Config.VocabSize];
        ctx.Evaluate(tokens, logits, allLogits: true);
        return logits;
    }

    private static int[] Sequence(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => 3 + rng.Next(256)).ToArray();
    }

    private static void AssertClose(float[] expected, ReadOnlySpan<float> actual, double tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= tolerance, $"largest difference {worst}");
    }

    /// <summary>
    /// With F16 or Q8_0 weights inference also rounds the activations to that type (llama.cpp's vec_dot_type), which training,
    /// working on dequantized rows, does not: there the two agree only to that rounding.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.F32, 1e-4)]
    [InlineData(GgmlType.F16, 0.05)]
    [InlineData(GgmlType.Q8_0, 0.5)]
    public void TrainingForwardMatchesInference(GgmlType type, double tolerance)
    {
        using var model = LlamaModel.Load(BaseModel(type));
        var adapter = LoraAdapter.Create(model.Config, 4, 8, LoraTargetNames.All, seed: 5);
        var trainModel = new LoraLlamaModel(model, adapter, _pool);
        int[] tokens = Sequence(12, 1);
        Assert.True(double.IsNaN(trainModel.Forward(tokens, [], 1, tokens.Length)));
        // B = 0: the adapted model is the base, so the training forward must give inference's logits
        AssertClose(Logits(model, tokens), trainModel.Logits, tolerance);
    }

    /// <summary>
    /// The whole model's gradient, one adapter tensor at a time: the directional derivative along that tensor's
    /// gradient g, by central differences of the float32 loss, must equal |g|. Step ε·|g| = 1e-2 keeps the
    /// float32 rounding of the loss (~1e-6 relative) three orders below the signal; a wrong or missing path
    /// (a K/V offset, a dropped scale, a transposed B) is off by far more than the 3 % allowed.
    /// </summary>
    [Fact]
    public void ModelGradientMatchesDirectionalDifferences()
    {
        using var model = LlamaModel.Load(BaseModel(GgmlType.Q8_0));
        var adapter = RandomAdapter(model.Config, LoraTargetNames.All, 13);
        var m = new LoraLlamaModel(model, adapter, _pool);
        int[] tokens = Sequence(2 * 9, 8), inputs = tokens[..16], targets = tokens[1..17];
        m.Forward(inputs, targets, 2, 8);
        m.Backward();
        var values = m.Parameters.Values;
        var gradient = (float[])m.Parameters.Gradients.Clone();
        foreach (var p in m.Parameters.Tensors)
        {
            var g = gradient.AsSpan(p.Offset, p.Length);
            double norm = Math.Sqrt(g.ToArray().Sum(v => (double)v * v));
            Assert.True(norm > 1e-6, $"{p.Name}: zero gradient");
            double eps = 1e-2 / norm;
            var saved = values.AsSpan(p.Offset, p.Length).ToArray();
            for (int i = 0; i < p.Length; i++) values[p.Offset + i] = saved[i] + (float)(eps * g[i] / norm);
            double plus = m.Forward(inputs, targets, 2, 8);
            for (int i = 0; i < p.Length; i++) values[p.Offset + i] = saved[i] - (float)(eps * g[i] / norm);
            double minus = m.Forward(inputs, targets, 2, 8);
            saved.CopyTo(values.AsSpan(p.Offset, p.Length));
            double numeric = (plus - minus) / (2 * eps);
            Assert.True(Math.Abs(numeric - norm) <= 0.03 * norm, $"{p.Name}: |g| {norm}, directional difference {numeric}");
        }
    }

    [Fact]
    public void FinetuningLowersLossOnAMemorizableSequence()
    {
        using var model = LlamaModel.Load(BaseModel(GgmlType.Q8_0));
        var adapter = LoraAdapter.Create(model.Config, 4, 8, LoraTargetNames.All, seed: 7);
        var trainModel = new LoraLlamaModel(model, adapter, _pool);
        int[] pattern = Sequence(13, 3);
        int[] data = Enumerable.Repeat(pattern, 12).SelectMany(p => p).ToArray();
        var tuner = new LoraFinetuner(trainModel, new LoraFinetuneOptions { Batch = 4, SequenceLength = 16, Steps = 60, LearningRate = 2e-2f, WarmupSteps = 5 }, data);
        double first = tuner.TrainStep().Loss, last = 0;
        for (int i = 1; i < 60; i++)
            last = tuner.TrainStep().Loss;
        Assert.True(last < 0.3 * first, $"loss {first} → {last}");
        // the trained adapter, applied at inference, predicts the pattern too
        int[] probe = data[..26];
        var logits = Logits(model, probe, [trainModel.Adapter]);
        int vocab = model.Config.VocabSize, right = 0;
        for (int t = 13; t < 25; t++)
            right += ArgMax(logits.AsSpan(t * vocab, vocab)) == probe[t + 1] ? 1 : 0;
        Assert.True(right >= 10, $"{right}/12 next tokens right");
    }

    /// <summary>QLoRA on llama.cpp-quantized bases (K-quant mix, legacy and 2-bit): the frozen rows dequantize on the fly and the adapter still learns.</summary>
    [SharedTheory]
    [InlineData("tiny256-Q4_K_M.gguf")]
    [InlineData("tiny256-Q4_0-pure.gguf")]
    [InlineData("tiny256-Q2_K-pure.gguf")]
    public void QLoraLearnsOnQuantizedBases(string name)
    {
        string basePath = SharedData.Path("refs", "quant", name);
        using var model = LlamaModel.Load(basePath);
        var adapter = LoraAdapter.Create(model.Config, 4, 8, LoraTargetNames.All, seed: 2);
        var trainModel = new LoraLlamaModel(model, adapter, _pool);
        int[] data = Enumerable.Repeat(Sequence(11, 6), 10).SelectMany(p => p).ToArray();
        var tuner = new LoraFinetuner(trainModel, new LoraFinetuneOptions { Batch = 2, SequenceLength = 16, Steps = 30, LearningRate = 2e-2f, WarmupSteps = 3 }, data);
        double first = tuner.TrainStep().Loss, last = 0;
        for (int i = 1; i < 30; i++)
            last = tuner.TrainStep().Loss;
        Assert.True(last < 0.5 * first, $"loss {first} → {last}");
        LoraMergeExporter.Merge(basePath, [trainModel.Adapter], P("merged.gguf"), null);
        using var merged = LlamaModel.Load(P("merged.gguf"));
        Assert.Equal(model.Layers[0].Down.Type, merged.Layers[0].Down.Type);
        Assert.Equal(new FileInfo(basePath).Length, new FileInfo(P("merged.gguf")).Length);
    }

    [Fact]
    public void FinetuningIsBitIdenticalForAnyThreadCount()
    {
        using var model = LlamaModel.Load(BaseModel(GgmlType.Q8_0));
        int[] data = Sequence(200, 12);
        float[] Train(WorkerPool? pool)
        {
            var m = new LoraLlamaModel(model, LoraAdapter.Create(model.Config, 3, 6, LoraTargetNames.All, seed: 4), pool);
            var tuner = new LoraFinetuner(m, new LoraFinetuneOptions { Batch = 3, SequenceLength = 11, Steps = 4, LearningRate = 1e-2f }, data);
            for (int i = 0; i < 4; i++)
                tuner.TrainStep();
            return m.Parameters.Values;
        }
        Assert.Equal(Train(null), Train(_pool));
    }

    /// <summary>
    /// 6 steps straight equal 3 steps, a checkpoint written and read back, a fresh model and finetuner (another
    /// thread count, another adapter initialization) restored from it, 3 more steps: adapters and moments bit for bit.
    /// </summary>
    [Fact]
    public void FinetuneResumeContinuesBitIdentically()
    {
        using var model = LlamaModel.Load(BaseModel(GgmlType.Q8_0));
        int[] data = Sequence(200, 12);
        var options = new LoraFinetuneOptions { Batch = 3, SequenceLength = 11, Steps = 6, LearningRate = 1e-2f, WarmupSteps = 2 };
        LoraFinetuner Tuner(WorkerPool? pool, ulong seed) =>
            new(new LoraLlamaModel(model, LoraAdapter.Create(model.Config, 3, 6, [LoraTarget.Query, LoraTarget.Value, LoraTarget.Down], seed), pool), options, data);
        var straight = Tuner(_pool, 4);
        for (int i = 0; i < 6; i++)
            straight.TrainStep();

        var first = Tuner(_pool, 4);
        for (int i = 0; i < 3; i++)
            first.TrainStep();
        first.Snapshot("base.gguf", 123).Write(P("lora.ckpt"));
        var checkpoint = LoraCheckpoint.Read(P("lora.ckpt"));
        Assert.Equal(("base.gguf", 123L, 3, 6f, "q,v,down", 3L), (checkpoint.BaseModel, checkpoint.BaseBytes, checkpoint.Rank, checkpoint.Alpha, checkpoint.Targets, checkpoint.Step));
        var resumed = Tuner(null, 99); // the restore must overwrite the initialization entirely
        resumed.Restore(checkpoint);
        for (int i = 0; i < 3; i++)
            resumed.TrainStep();

        Assert.Equal(6, resumed.Step);
        Assert.Equal(straight.Model.Parameters.Values, resumed.Model.Parameters.Values);
        Assert.Equal(straight.Optimizer.FirstMoment, resumed.Optimizer.FirstMoment);
        Assert.Equal(straight.Optimizer.SecondMoment, resumed.Optimizer.SecondMoment);
        Assert.NotEqual(first.Model.Parameters.Values, resumed.Model.Parameters.Values);

        // another adapter shape, other data or another batch is refused with the reason
        var otherRank = new LoraFinetuner(new LoraLlamaModel(model, LoraAdapter.Create(model.Config, 2, 6, [LoraTarget.Query, LoraTarget.Value, LoraTarget.Down], 4), null), options, data);
        Assert.Contains("resume with the same", Assert.Throws<TrainingConfigException>(() => otherRank.Restore(checkpoint)).Message);
        var otherData = new LoraFinetuner(new LoraLlamaModel(model, LoraAdapter.Create(model.Config, 3, 6, [LoraTarget.Query, LoraTarget.Value, LoraTarget.Down], 4), null), options, Sequence(200, 13));
        Assert.Contains("other data", Assert.Throws<TrainingConfigException>(() => otherData.Restore(checkpoint)).Message);
        // a training checkpoint is not a LoRA checkpoint, and a damaged one fails its checksum
        byte[] bytes = File.ReadAllBytes(P("lora.ckpt"));
        bytes[bytes.Length / 2] ^= 1;
        File.WriteAllBytes(P("bad.ckpt"), bytes);
        Assert.Contains("checksum mismatch", Assert.Throws<InvalidDataException>(() => LoraCheckpoint.Read(P("bad.ckpt"))).Message);
        Assert.Contains("not a Kiln checkpoint", Assert.Throws<InvalidDataException>(() => Kiln.Training.Checkpoints.TrainingCheckpoint.Read(P("lora.ckpt"))).Message);
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++)
            if (v[i] > v[best])
                best = i;
        return best;
    }

    private static LoraAdapter RandomAdapter(LlamaConfig config, IReadOnlyList<LoraTarget> targets, int seed)
    {
        var adapter = LoraAdapter.Create(config, 3, 6, targets, (ulong)seed);
        var rng = new Random(seed);
        foreach (var w in adapter.Weights)
            for (int i = 0; i < w.B.Length; i++)
                w.B[i] = (float)(rng.NextDouble() * 2 - 1) * 0.3f;
        return adapter;
    }

    [Fact]
    public void AdapterRoundTripsThroughGguf()
    {
        using var model = LlamaModel.Load(BaseModel());
        var adapter = RandomAdapter(model.Config, LoraTargetNames.Parse("q,v,down"), 9);
        adapter.Save(P("a.gguf"));
        using (var file = GgufFile.Open(P("a.gguf")))
        {
            Assert.Equal("adapter", file.GetString("general.type"));
            Assert.Equal("lora", file.GetString("adapter.type"));
            Assert.Equal(6f, file.GetFloat("adapter.lora.alpha"));
            var a = file.GetTensor("blk.1.ffn_down.weight.lora_a");
            var b = file.GetTensor("blk.1.ffn_down.weight.lora_b");
            Assert.Equal([96L, 3L], a.Dimensions); // ne [in, rank]
            Assert.Equal([3L, 64L], b.Dimensions); // ne [rank, out]
        }
        var back = LoraAdapter.Load(P("a.gguf"));
        Assert.Equal("llama", back.Architecture);
        Assert.Equal(adapter.Weights.Count, back.Weights.Count);
        foreach (var w in adapter.Weights)
        {
            var r = back.Find(w.Layer, w.Target)!;
            Assert.Equal(w.A, r.A);
            Assert.Equal(w.B, r.B);
        }
    }

    /// <summary>An F32 base: inference computes in float on both sides, so only summation order differs.</summary>
    [Fact]
    public void AdapterAtInferenceEqualsMergedModel()
    {
        const GgmlType baseType = GgmlType.F32;
        const double tolerance = 1e-4;
        string basePath = BaseModel(baseType);
        using var model = LlamaModel.Load(basePath);
        var adapter = RandomAdapter(model.Config, LoraTargetNames.All, 21);
        int[] tokens = Sequence(10, 4);
        var withAdapter = Logits(model, tokens, [adapter]);
        LoraMergeExporter.Merge(basePath, [adapter], P("merged.gguf"), GgmlType.F32);
        using var merged = LlamaModel.Load(P("merged.gguf"));
        Assert.Equal(GgmlType.F32, merged.Layers[0].Query.Type);
        AssertClose(withAdapter, Logits(merged, tokens), tolerance);
        var baseLogits = Logits(model, tokens);
        Assert.True(baseLogits.Zip(withAdapter).Max(p => Math.Abs(p.First - p.Second)) > 1e-2, "the adapter changed nothing");
        // requantized to the base type, the merge is close but not exact
        LoraMergeExporter.Merge(basePath, [adapter], P("merged-base.gguf"), null);
        using var requantized = LlamaModel.Load(P("merged-base.gguf"));
        Assert.Equal(baseType, requantized.Layers[1].Down.Type);
        AssertClose(withAdapter, Logits(requantized, tokens), tolerance);
    }

    [Fact]
    public void MergeRequantizesToTheBaseType()
    {
        string basePath = BaseModel(GgmlType.Q8_0);
        using var model = LlamaModel.Load(basePath);
        var adapter = RandomAdapter(model.Config, LoraTargetNames.Parse("q,gate"), 4);
        LoraMergeExporter.Merge(basePath, [adapter], P("merged-q8.gguf"), null);
        using var merged = LlamaModel.Load(P("merged-q8.gguf"));
        Assert.Equal(GgmlType.Q8_0, merged.Layers[0].Query.Type);
        // the adapted matrix is the base plus the update, rounded once more to Q8_0
        var lw = adapter.Find(1, LoraTarget.Gate)!;
        float scale = adapter.ScaleOf(lw);
        var baseRow = new float[64];
        var mergedRow = new float[64];
        RowKernels.Dequantize(GgmlType.Q8_0, model.Layers[1].Gate.Row(7), baseRow);
        RowKernels.Dequantize(GgmlType.Q8_0, merged.Layers[1].Gate.Row(7), mergedRow);
        double worst = 0;
        for (int k = 0; k < 64; k++)
        {
            double expected = baseRow[k];
            for (int q = 0; q < lw.Rank; q++)
                expected += scale * lw.B[7 * lw.Rank + q] * lw.A[q * 64 + k];
            worst = Math.Max(worst, Math.Abs(expected - mergedRow[k]));
        }
        Assert.True(worst < 0.01, $"merged row off by {worst}");
        Assert.NotEqual(baseRow, mergedRow);
        // an untouched matrix is copied byte for byte
        Assert.True(model.Layers[1].Up.Row(3).SequenceEqual(merged.Layers[1].Up.Row(3)));
    }

    [Fact]
    public void ZeroBAdapterGivesExactlyTheBaseOutput()
    {
        using var model = LlamaModel.Load(BaseModel(GgmlType.Q8_0));
        var adapter = LoraAdapter.Create(model.Config, 4, 16, LoraTargetNames.All, seed: 3);
        int[] tokens = Sequence(9, 5);
        Assert.Equal(Logits(model, tokens), Logits(model, tokens, [adapter]));
    }

    [Fact]
    public void AdapterForAnotherModelIsRefused()
    {
        using var small = LlamaModel.Load(BaseModel(dim: 32, name: "small.gguf"));
        using var model = LlamaModel.Load(BaseModel());
        var adapter = LoraAdapter.Create(small.Config, 2, 4, LoraTargetNames.All, seed: 1);
        var e = Assert.Throws<ModelFormatException>(() => Logits(model, [5, 6], [adapter]));
        Assert.Contains("another model", e.Message);
        Assert.Throws<ModelFormatException>(() => new LoraLlamaModel(model, adapter, null));
        Assert.Throws<ModelFormatException>(() => LoraMergeExporter.Merge(P("base.gguf"), [adapter], P("m.gguf"), null));
    }

    [Fact]
    public void BadAdapterFilesAreRefused()
    {
        string basePath = BaseModel();
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(basePath));
        Assert.Contains("is not a LoRA adapter", e.Message);

        var w = new GgufWriter();
        w.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        w.SetMetadata("general.type", GgufValue.FromString("adapter"));
        w.SetMetadata("adapter.type", GgufValue.FromString("lora"));
        w.SetMetadata("adapter.lora.alpha", GgufValue.FromFloat32(8));
        w.AddTensor("blk.0.attn_q.weight.lora_a", GgmlType.F32, [64, 4], new byte[64 * 4 * 4]);
        w.AddTensor("blk.0.attn_q.weight.lora_b", GgmlType.F32, [3, 64], new byte[3 * 64 * 4]);
        w.Write(P("bad-rank.gguf"));
        e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(P("bad-rank.gguf")));
        Assert.Contains("rank 4", e.Message);

        var half = new GgufWriter();
        half.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        half.SetMetadata("general.type", GgufValue.FromString("adapter"));
        half.SetMetadata("adapter.type", GgufValue.FromString("lora"));
        half.AddTensor("blk.0.attn_q.weight.lora_a", GgmlType.F32, [64, 4], new byte[64 * 4 * 4]);
        half.Write(P("half.gguf"));
        e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(P("half.gguf")));
        Assert.Contains("missing its lora_b", e.Message);
    }
}
