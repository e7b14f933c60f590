using Kiln.Distributed;
using Kiln.Training;
using Kiln.Training.Data;
using Kiln.Training.Models;
using Kiln.Training.Parallel;

namespace Kiln.Tests.Training;

/// <summary>
/// Megatron-LM tensor parallelism with ranks as threads (LocalCommunicator): a split model must train as the whole
/// one does, hold only its shard, and communicate exactly once per sub-layer each way.
/// </summary>
public sealed class TensorParallelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-tp-").FullName;
    private readonly string _data;

    public TensorParallelTests()
    {
        _data = Path.Combine(_dir, "train.bin");
        var rng = new Random(5);
        TokenStreamFile.Write(_data, Enumerable.Range(0, 2000).Select(_ => rng.Next(29)).ToArray(), 29);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Heads, KV heads (Llama: GQA, 2 query heads per KV head) and ffn all divisible by 4, so T = 2 and 4 both fit.
    private static TrainingConfig Config(ModelFamily family) => family == ModelFamily.Llama
        ? new() { Family = family, Layers = 2, Dim = 32, Heads = 8, KvHeads = 4, Ffn = 48, Vocab = 29, Context = 16 }
        : new() { Family = family, Layers = 2, Dim = 32, Heads = 4, Ffn = 64, Vocab = 29, Context = 16 };

    private static readonly TrainerOptions Options = new()
    {
        Batch = 2,
        SequenceLength = 16,
        Steps = 10,
        GradAccum = 2,
        WarmupSteps = 2,
        LearningRate = 1e-2f,
        Clip = 0.5f, // low enough that clipping acts: the split norm must be the whole model's
        Seed = 7,
    };

    private sealed record RankRun(double[] Losses, double[] Norms, float[] Shard, float[] Gathered, long AllReduces, long ElementsReduced);

    private (double[] Losses, double[] Norms, float[] Weights) TrainSingle(TrainingConfig config)
    {
        using var data = TokenStream.Open(_data);
        var t = Trainer.Start(config, Options, data, null);
        var results = Enumerable.Range(0, Options.Steps).Select(_ => t.TrainStep()).ToArray();
        return (results.Select(r => r.Loss).ToArray(), results.Select(r => r.GradientNorm).ToArray(), t.Model.Parameters.Values);
    }

    private RankRun[] TrainSplit(TrainingConfig config, int ranks) => LocalCommunicator.Run(ranks, comm =>
    {
        using var data = TokenStream.Open(_data);
        var tp = new TensorParallel(comm, config);
        var t = Trainer.Start(config, Options, data, null, tp);
        var results = Enumerable.Range(0, Options.Steps).Select(_ => t.TrainStep()).ToArray();
        var sharding = new TensorParallelSharding(tp.Layout, t.Model.Parameters.Tensors);
        var gathered = new float[sharding.FullCount];
        sharding.AllGather<float>(comm, t.Model.Parameters.Values, gathered);
        return new RankRun(results.Select(r => r.Loss).ToArray(), results.Select(r => r.GradientNorm).ToArray(),
            t.Model.Parameters.Values, gathered, tp.AllReduces, tp.ElementsReduced);
    });

    /// <summary>
    /// 10 optimizer steps (2 micro-batches each, clipping active) split over T ranks against the single-process run
    /// from the same seed. The split changes nothing but summation order: the row-parallel products and the f
    /// backward add T partial sums of dim/T or ffn/T terms instead of one running sum, a row-parallel bias joins
    /// rank 0's partial sum instead of the total, and the gradient norm's squares are added in another order (in
    /// double). Each reordering moves a float result by an ulp or so (relative ~6e-8), and nothing in 10 steps
    /// amplifies that much: measured, losses differ by ≤ 6e-8 (bound 1e-6), weights by ≤ 3e-6 (bound 2e-5).
    /// GPT-2's key biases are the exception: softmax ignores the q·b_k added to every score of a row, so their
    /// exact gradient is zero and what they get is rounding noise, which AdamW turns into updates up to
    /// lr·|g|/ε: they differ by ≤ 5e-5 (bound 1e-3). Checked to fail: a missing backward all-reduce moves the
    /// first gradient norm by 1%, a row-parallel bias added on every rank the second loss by 1e-3.
    /// </summary>
    [Theory]
    [InlineData(ModelFamily.Llama, 2)]
    [InlineData(ModelFamily.Llama, 4)]
    [InlineData(ModelFamily.Gpt2, 2)]
    [InlineData(ModelFamily.Gpt2, 4)]
    public void TrainingMatchesSingleProcess(ModelFamily family, int ranks)
    {
        var config = Config(family);
        var single = TrainSingle(config);
        var split = TrainSplit(config, ranks);

        Assert.Contains(single.Norms, n => n > Options.Clip);
        for (int step = 0; step < Options.Steps; step++)
        {
            Assert.True(Math.Abs(split[0].Losses[step] - single.Losses[step]) < 1e-6,
                $"step {step + 1}: loss {split[0].Losses[step]} split, {single.Losses[step]} single");
            Assert.True(Math.Abs(split[0].Norms[step] - single.Norms[step]) < 1e-5 * single.Norms[step],
                $"step {step + 1}: gradient norm {split[0].Norms[step]} split, {single.Norms[step]} single");
        }
        var keyBiases = TrainableModel<float>.Create(config, null).Parameters.Tensors
            .Where(p => p.Name.EndsWith("attn.c_attn.bias", StringComparison.Ordinal))
            .SelectMany(p => Enumerable.Range(p.Offset + config.Dim, config.Dim)).ToHashSet();
        float maxDiff = 0, maxKeyBiasDiff = 0;
        for (int i = 0; i < single.Weights.Length; i++)
        {
            float d = Math.Abs(split[0].Gathered[i] - single.Weights[i]);
            if (keyBiases.Contains(i))
                maxKeyBiasDiff = Math.Max(maxKeyBiasDiff, d);
            else
                maxDiff = Math.Max(maxDiff, d);
        }
        Assert.True(maxDiff < 2e-5f, $"largest weight difference after gathering: {maxDiff}");
        Assert.True(maxKeyBiasDiff < 1e-3f, $"largest key-bias difference after gathering: {maxKeyBiasDiff}");
        Assert.True(single.Weights.Zip(split[0].Gathered).Count(p => p.First != p.Second) > 0,
            "bit-identical weights: the comparison did not exercise a split summation");

        // every rank saw the same losses and norms and ends with the same gathered model
        foreach (var r in split.Skip(1))
        {
            Assert.Equal(split[0].Losses, r.Losses);
            Assert.Equal(split[0].Norms, r.Norms);
            Assert.Equal(split[0].Gathered, r.Gathered);
        }
    }

    /// <summary>Norms, embeddings, the output head and the row-parallel biases are the same bits on every rank after training, with no communication of their own.</summary>
    [Theory]
    [InlineData(ModelFamily.Llama, 4)]
    [InlineData(ModelFamily.Gpt2, 2)]
    public void ReplicatedParametersStayBitIdentical(ModelFamily family, int ranks)
    {
        var config = Config(family);
        var split = TrainSplit(config, ranks);
        var layout = new TensorParallelLayout(config, ranks);
        var tensors = TrainableModel<float>.Create(config, null, tensorParallel: new TensorParallel(LocalCommunicator.CreateWorld(ranks)[0], config))
            .Parameters.Tensors;
        int replicated = 0;
        foreach (var p in tensors.Where(p => layout.ShardOf(p.Name).Axis == ShardAxis.Replicated))
        {
            replicated++;
            var first = split[0].Shard.AsSpan(p.Offset, p.Length).ToArray();
            foreach (var r in split.Skip(1))
                Assert.Equal(first, r.Shard.AsSpan(p.Offset, p.Length).ToArray());
        }
        // Llama: embedding, 2 norms per layer, final norm, output; GPT-2: wte, wpe, 4 norm tensors and 2 biases per layer, 2 final
        Assert.Equal(family == ModelFamily.Llama ? 3 + 2 * config.Layers : 4 + 6 * config.Layers, replicated);
    }

    /// <summary>
    /// One forward and backward: the gathered gradients equal the single-process ones, and the blocks made exactly
    /// one all-reduce forward and one backward per sub-layer, each of rows·dim elements (with block recomputation,
    /// the re-run forwards of all blocks but the top add theirs).
    /// </summary>
    [Theory]
    [InlineData(ModelFamily.Llama, 2, Recomputation.None)]
    [InlineData(ModelFamily.Llama, 4, Recomputation.Block)]
    [InlineData(ModelFamily.Gpt2, 4, Recomputation.None)]
    [InlineData(ModelFamily.Gpt2, 2, Recomputation.Block | Recomputation.Attention)]
    public void GradientsMatchWithOneAllReducePerSubLayerEachWay(ModelFamily family, int ranks, Recomputation recompute)
    {
        const int batch = 3, seq = 11;
        var config = Config(family);
        var rng = new Random(8);
        int[] inputs = Enumerable.Range(0, batch * seq).Select(_ => rng.Next(config.Vocab)).ToArray();
        int[] targets = Enumerable.Range(0, batch * seq).Select(_ => rng.Next(config.Vocab)).ToArray();

        var whole = TrainableModel<float>.Create(config, null);
        whole.Initialize(new TrainingRandom(3));
        whole.ZeroGradients();
        double loss = whole.Forward(inputs, targets, batch, seq);
        whole.Backward();

        var split = LocalCommunicator.Run(ranks, comm =>
        {
            var tp = new TensorParallel(comm, config);
            var model = TrainableModel<float>.Create(config, null, recompute, tp);
            model.Initialize(new TrainingRandom(3));
            model.ZeroGradients();
            double l = model.Forward(inputs, targets, batch, seq);
            model.Backward();
            var sharding = new TensorParallelSharding(tp.Layout, model.Parameters.Tensors);
            var gradients = new float[sharding.FullCount];
            sharding.AllGather<float>(comm, model.Parameters.Gradients, gradients);
            return (Loss: l, Gradients: gradients, tp.AllReduces, tp.ElementsReduced);
        });

        int layers = config.Layers, rows = batch * seq;
        int recomputed = (recompute & Recomputation.Block) != 0 ? layers - 1 : 0;
        foreach (var r in split)
        {
            Assert.Equal(4L * layers + 2 * recomputed, r.AllReduces);
            Assert.Equal((4L * layers + 2 * recomputed) * rows * config.Dim, r.ElementsReduced);
            Assert.True(Math.Abs(r.Loss - loss) < 1e-5, $"loss {r.Loss} split, {loss} whole");
        }
        var g = whole.Parameters.Gradients;
        float scale = g.Max(Math.Abs);
        for (int i = 0; i < g.Length; i++)
            Assert.True(Math.Abs(split[0].Gradients[i] - g[i]) <= 1e-5f * scale, $"gradient {i}: {split[0].Gradients[i]} split, {g[i]} whole");
    }

    /// <summary>A split model's initialization is the single-process one, cut: bit for bit, every rank.</summary>
    [Theory]
    [InlineData(ModelFamily.Llama, 4)]
    [InlineData(ModelFamily.Gpt2, 2)]
    public void InitializationIsTheSingleProcessOneCut(ModelFamily family, int ranks)
    {
        var config = Config(family);
        var whole = TrainableModel<float>.Create(config, null);
        whole.Initialize(new TrainingRandom(11));
        var world = LocalCommunicator.CreateWorld(ranks);
        for (int rank = 0; rank < ranks; rank++)
        {
            var model = TrainableModel<float>.Create(config, null, tensorParallel: new TensorParallel(world[rank], config));
            model.Initialize(new TrainingRandom(11));
            var sharding = new TensorParallelSharding(model.TensorParallel!.Layout, model.Parameters.Tensors);
            var expected = new float[sharding.ShardCount];
            sharding.Shard<float>(whole.Parameters.Values, expected, rank);
            Assert.Equal(expected, model.Parameters.Values);
        }
    }

    /// <summary>
    /// The sharding's derived full layout is the single-process model's; shard then gather gives the buffer back;
    /// and a few elements land where Megatron's split puts them, worked out by hand from the shapes.
    /// </summary>
    [Fact]
    public void ShardAndGatherFollowTheSplit()
    {
        var config = Config(ModelFamily.Llama); // dim 32, 8 heads of 4, 4 KV heads, ffn 48
        const int ranks = 4;
        var whole = TrainableModel<float>.Create(config, null);
        var model = TrainableModel<float>.Create(config, null, tensorParallel: new TensorParallel(LocalCommunicator.CreateWorld(ranks)[0], config));
        var sharding = new TensorParallelSharding(model.TensorParallel!.Layout, model.Parameters.Tensors);
        Assert.Equal(whole.Parameters.Count, sharding.FullCount);
        Assert.Equal(whole.Parameters.Tensors.Select(t => (t.Name, t.Offset, string.Join(",", t.Shape))),
            sharding.FullTensors.Select(t => (t.Name, t.Offset, string.Join(",", t.Shape))));

        float[] full = Enumerable.Range(0, sharding.FullCount).Select(i => (float)i).ToArray();
        var shards = new float[ranks * sharding.ShardCount];
        for (int r = 0; r < ranks; r++)
            sharding.Shard<float>(full, shards.AsSpan(r * sharding.ShardCount, sharding.ShardCount), r);
        var back = new float[full.Length];
        sharding.Gather<float>(shards, back);
        Assert.Equal(full, back);

        float At(int rank, string name, int index) =>
            shards[rank * sharding.ShardCount + model.Parameters[name].Offset + index];
        int Full(string name, int index) => whole.Parameters[name].Offset + index;
        // attn_qkv [(8 + 4 + 4)·4, 32]: rank 2 holds Q heads 4–5 (rows 16–23), K head 2 (rows 32 + 8…), V head 2 (rows 48 + 8…)
        Assert.Equal(Full("blk.1.attn_qkv.weight", 16 * 32), At(2, "blk.1.attn_qkv.weight", 0));
        Assert.Equal(Full("blk.1.attn_qkv.weight", (32 + 8) * 32 + 5), At(2, "blk.1.attn_qkv.weight", 8 * 32 + 5));
        Assert.Equal(Full("blk.1.attn_qkv.weight", (48 + 8 + 3) * 32 + 1), At(2, "blk.1.attn_qkv.weight", (12 + 3) * 32 + 1));
        // attn_output [32, 32]: rank 3 holds columns 24–31 of every row
        Assert.Equal(Full("blk.0.attn_output.weight", 5 * 32 + 24 + 7), At(3, "blk.0.attn_output.weight", 5 * 8 + 7));
        // ffn_gate_up [2·48, 32]: rank 1 holds gate rows 12–23, then up rows 48 + 12…
        Assert.Equal(Full("blk.0.ffn_gate_up.weight", 12 * 32), At(1, "blk.0.ffn_gate_up.weight", 0));
        Assert.Equal(Full("blk.0.ffn_gate_up.weight", (48 + 12 + 2) * 32 + 9), At(1, "blk.0.ffn_gate_up.weight", (12 + 2) * 32 + 9));
        // ffn_down [32, 48]: rank 1 holds columns 12–23
        Assert.Equal(Full("blk.0.ffn_down.weight", 31 * 48 + 12 + 11), At(1, "blk.0.ffn_down.weight", 31 * 12 + 11));
        // replicated: output_norm whole on rank 3
        Assert.Equal(Full("output_norm.weight", 17), At(3, "output_norm.weight", 17));
    }

    /// <summary>Each rank's parameter count: replicated tensors whole, the four projections per layer divided by T.</summary>
    [Theory]
    [InlineData(ModelFamily.Llama, 2)]
    [InlineData(ModelFamily.Llama, 4)]
    [InlineData(ModelFamily.Gpt2, 2)]
    [InlineData(ModelFamily.Gpt2, 4)]
    public void EachRankHoldsItsShard(ModelFamily family, int ranks)
    {
        var config = Config(family);
        int c = config.Dim, f = config.FfnDim, v = config.Vocab, l = config.Layers, hd = config.HeadDim;
        long expected = family == ModelFamily.Llama
            // embedding, output, final norm; per layer 2 norms + QKV (H + 2·Hkv)·hd × c + output c × H·hd + gate/up 2f × c + down c × f
            ? 2L * v * c + c + l * (2L * c + ((config.Heads + 2L * config.KvHeadCount) * hd * c + c * c + 2L * f * c + (long)c * f) / ranks)
            // wte, wpe, ln_f; per layer 2 LayerNorms, 2 row-parallel biases + c_attn 3c × c + 3c, c_proj c × c, c_fc f × c + f, c_proj c × f
            : (long)v * c + (long)config.Context * c + 2 * c + l * (4L * c + 2 * c + (3L * c * c + 3 * c + c * c + (long)f * c + f + (long)c * f) / ranks);
        var world = LocalCommunicator.CreateWorld(ranks);
        for (int rank = 0; rank < ranks; rank++)
        {
            var model = TrainableModel<float>.Create(config, null, tensorParallel: new TensorParallel(world[rank], config));
            Assert.Equal(expected, model.Parameters.Count);
        }
        Assert.True(expected < TrainableModel<float>.Create(config, null).Parameters.Count);
    }

    [Fact]
    public void ALayoutThatDoesNotDivideTheHeadsIsRefused()
    {
        var world = LocalCommunicator.CreateWorld(4);
        var sixHeads = new TrainingConfig { Family = ModelFamily.Llama, Layers = 2, Dim = 24, Heads = 6, KvHeads = 2, Ffn = 48, Vocab = 29, Context = 16 };
        var e = Assert.Throws<TrainingConfigException>(() => new TensorParallel(world[0], sixHeads));
        Assert.Contains("heads divisible by 4; the model has 6", e.Message);
        var twoKv = Config(ModelFamily.Llama) with { KvHeads = 2 };
        e = Assert.Throws<TrainingConfigException>(() => new TensorParallel(world[0], twoKv));
        Assert.Contains("KV heads divisible by 4; the model has 2", e.Message);
        var ffn = Config(ModelFamily.Gpt2) with { Ffn = 66 };
        e = Assert.Throws<TrainingConfigException>(() => TrainableModel<float>.Create(ffn, null, tensorParallel: new TensorParallel(world[1], ffn)));
        Assert.Contains("feed-forward width divisible by 4; the model has 66", e.Message);
    }
}
