using Kiln.Distributed.Planning;
using Kiln.Training;
using Kiln.Training.Models;

namespace Kiln.Tests.Distributed.Planning;

/// <summary>The planner's counts from the shape alone against what the trainer allocates.</summary>
public sealed class ModelFootprintTests
{
    private static readonly TrainingConfig Gpt = new() { Family = ModelFamily.Gpt2, Layers = 4, Dim = 32, Heads = 4, Vocab = 50, Context = 16 };
    private static readonly TrainingConfig Llama = new() { Family = ModelFamily.Llama, Layers = 4, Dim = 32, Heads = 4, KvHeads = 2, Ffn = 48, Vocab = 40, Context = 16 };

    public static TheoryData<string> Families() => new() { "gpt2", "llama" };

    private static TrainingConfig Config(string family) => family == "gpt2" ? Gpt : Llama;

    [Theory]
    [MemberData(nameof(Families))]
    public void ParameterCountEqualsTheTrainersModel(string family)
    {
        var config = Config(family);
        var model = TrainableModel<float>.Create(config, null);
        Assert.Equal(model.Parameters.Count, new ModelFootprint(config).Parameters);
    }

    [Fact]
    public void Llama2_7BHasItsPublishedParameterCount() =>
        Assert.Equal(6_738_415_616L, new ModelFootprint(ModelPresets.Find("llama2-7b")!).Parameters);

    [Fact]
    public void Gpt2SmallHasItsPublishedParameterCount() =>
        Assert.Equal(124_439_808L, new ModelFootprint(ModelPresets.Find("gpt2-small")!).Parameters);

    [Theory]
    [InlineData("gpt2", Recomputation.None, 2, 8)]
    [InlineData("gpt2", Recomputation.Attention, 3, 5)]
    [InlineData("gpt2", Recomputation.Block, 1, 16)]
    [InlineData("llama", Recomputation.None, 2, 8)]
    [InlineData("llama", Recomputation.Attention, 3, 5)]
    [InlineData("llama", Recomputation.Block | Recomputation.Attention, 2, 16)]
    public void OneStageActivationsEqualTheTrainersBuffers(string family, Recomputation recompute, int batch, int seq)
    {
        var config = Config(family);
        var model = TrainableModel<float>.Create(config, null, recompute);
        int[] tokens = Enumerable.Range(0, batch * seq).Select(i => i * 7 % config.Vocab).ToArray();
        model.Forward(tokens, tokens, batch, seq);
        double planned = new ModelFootprint(config).StageActivationBytes(0, 1, 1, batch, seq, 1, recompute);
        Assert.Equal(model.ActivationBytes, planned);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void StagesShareTheParameters(string family)
    {
        var config = Config(family);
        var f = new ModelFootprint(config);
        foreach (int stages in new[] { 1, 2, 4 })
        {
            Assert.Equal(f.Parameters, Enumerable.Range(0, stages).Sum(s => f.StageComputeParameters(s, stages)));
            // GPT-2's tied classifier is held on the first and the last stage
            long twice = family == "gpt2" && stages > 1 ? (long)config.Vocab * config.Dim : 0;
            Assert.Equal(f.Parameters + twice, Enumerable.Range(0, stages).Sum(s => f.StageParameters(s, stages)));
        }
        Assert.Equal(f.EmbeddingParameters + 2 * f.LayerParameters, f.StageParameters(0, 2));
    }

    [Fact]
    public void TensorParallelismSplitsOnlyThePerHeadAndPerHiddenUnitBuffers()
    {
        var f = new ModelFootprint(Llama);
        // llama 32 wide, qkv (4 + 2·2)·8 = 64, ffn 48: per row 5·32 + 2 whole, (64 + 32 + 3·48) split; attention
        // probabilities and log-sum-exp per head row
        long rows = 2 * 8;
        Assert.Equal(rows * (162 + 240 / 2.0) + 2 * 4 / 2.0 * 8 * (8 + 1), f.LayerStoredElements(2, 8, 2, keepProbabilities: true));
        Assert.Equal(rows * (162 + 240 / 2.0) + 2 * 4 / 2.0 * 8, f.LayerStoredElements(2, 8, 2, keepProbabilities: false));
    }

    [Fact]
    public void OneFOneBHoldsFewerMicroBatchesThanGPipe()
    {
        var f = new ModelFootprint(Llama);
        double gpipe = f.StageActivationBytes(0, 2, 1, 1, 8, inFlight: 4, Recomputation.None);
        double oneFOneB = f.StageActivationBytes(0, 2, 1, 1, 8, inFlight: 2, Recomputation.None);
        double single = f.StageActivationBytes(0, 2, 1, 1, 8, inFlight: 1, Recomputation.None);
        // the per-micro-batch part scales with the count; the scratch is there once
        Assert.Equal(gpipe - oneFOneB, 2 * (oneFOneB - single), 6);
        Assert.True(oneFOneB < gpipe);
    }
}
