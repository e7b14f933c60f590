using Kiln.Training;
using Kiln.Training.Models;
using Kiln.Training.Optimization;

namespace Kiln.Tests.Training;

public sealed class OptimizationTests
{
    [Fact]
    public void AdamWMatchesTheFormulaWrittenOutInDouble()
    {
        var model = TrainableModel<float>.Create(ModelGradientTests.Tiny(ModelFamily.Gpt2), null);
        var ps = model.Parameters;
        var rng = new Random(3);
        for (int i = 0; i < ps.Count; i++)
            ps.Values[i] = rng.NextSingle() - 0.5f;
        float[] start = (float[])ps.Values.Clone();
        var options = new AdamWOptions { WeightDecay = 0.25f };
        var adam = new AdamW(ps, options);
        double[] m = new double[ps.Count], v = new double[ps.Count], p = start.Select(x => (double)x).ToArray();
        for (int step = 1; step <= 3; step++)
        {
            for (int i = 0; i < ps.Count; i++)
                ps.Gradients[i] = rng.NextSingle() - 0.5f;
            adam.Update(0.01f);
            foreach (var t in ps.Tensors)
                for (int i = t.Offset; i < t.Offset + t.Length; i++)
                {
                    double g = ps.Gradients[i];
                    m[i] = 0.9 * m[i] + 0.1 * g;
                    v[i] = 0.95 * v[i] + 0.05 * g * g;
                    double update = m[i] / (1 - Math.Pow(0.9, step)) / (Math.Sqrt(v[i] / (1 - Math.Pow(0.95, step))) + 1e-8);
                    p[i] -= 0.01 * (update + (t.Shape.Length >= 2 ? 0.25 * p[i] : 0));
                }
        }
        for (int i = 0; i < ps.Count; i++)
            Assert.True(Math.Abs(p[i] - ps.Values[i]) < 1e-5, $"parameter {i}: {ps.Values[i]} vs {p[i]}");
    }

    [Fact]
    public void WeightDecayOnlyTouchesMatrices()
    {
        var model = TrainableModel<float>.Create(ModelGradientTests.Tiny(ModelFamily.Gpt2), null);
        var ps = model.Parameters;
        Array.Fill(ps.Values, 1f);
        var adam = new AdamW(ps, new AdamWOptions { WeightDecay = 0.5f });
        adam.Update(0.1f); // zero gradients: only decay moves anything
        foreach (var t in ps.Tensors)
            Assert.All(ps.Value(t).ToArray(), x => Assert.Equal(t.Shape.Length >= 2 ? 0.95f : 1f, x));
    }

    [Fact]
    public void ScheduleWarmsUpThenFollowsTheCosine()
    {
        var s = new LearningRateSchedule(1f, 0.1f, 10, 110);
        Assert.Equal(0.1f, s.At(0), 6);
        Assert.Equal(1f, s.At(9), 6);
        Assert.Equal(1f, s.At(10), 6);
        Assert.Equal(0.55f, s.At(60), 5);
        Assert.Equal(0.1f, s.At(110), 6);
        Assert.Equal(0.1f, s.At(500), 6);
        Assert.True(s.At(30) > s.At(31));
    }

    [Fact]
    public void ClippingScalesToTheLimitAndLeavesSmallGradientsAlone()
    {
        float[] g = [3, 4];
        Assert.Equal(5.0, GradientClipping.Clip(g, 1f), 12);
        Assert.Equal(0.6f, g[0], 6);
        Assert.Equal(0.8f, g[1], 6);
        float[] small = [0.3f, 0.4f];
        GradientClipping.Clip(small, 1f);
        Assert.Equal([0.3f, 0.4f], small);
    }

    /// <summary>GPT-2's initialization: norm gains 1, norm and linear biases 0 (a bias of 1 shifts every normalized activation).</summary>
    [Theory]
    [InlineData(ModelFamily.Gpt2)]
    [InlineData(ModelFamily.Llama)]
    public void NormGainsStartAtOneAndBiasesAtZero(ModelFamily family)
    {
        var model = TrainableModel<float>.Create(ModelGradientTests.Tiny(family), null);
        model.Initialize(new TrainingRandom(1));
        foreach (var p in model.Parameters.Tensors.Where(t => t.Shape.Length == 1))
        {
            float expected = p.Name.EndsWith(".bias", StringComparison.Ordinal) ? 0f : 1f;
            Assert.All(model.Parameters.Value(p).ToArray(), v => Assert.Equal(expected, v));
        }
    }

    /// <summary>Two micro-batches of one sequence with loss scale ½ give the gradient of one batch of both.</summary>
    [Fact]
    public void AccumulatedMicroBatchesEqualOneBatch()
    {
        var config = ModelGradientTests.Tiny(ModelFamily.Llama);
        var model = TrainableModel<float>.Create(config, null);
        model.Initialize(new TrainingRandom(1));
        int[] tokens = Enumerable.Range(0, 16).Select(i => i * 5 % 11).ToArray();
        int[] targets = tokens.Select(t => (t + 3) % 11).ToArray();
        model.ZeroGradients();
        double whole = model.Forward(tokens, targets, 2, 8);
        model.Backward();
        float[] once = (float[])model.Parameters.Gradients.Clone();
        model.ZeroGradients();
        double a = model.Forward(tokens.AsSpan(0, 8), targets.AsSpan(0, 8), 1, 8);
        model.Backward(0.5);
        double b = model.Forward(tokens.AsSpan(8), targets.AsSpan(8), 1, 8);
        model.Backward(0.5);
        Assert.Equal(whole, (a + b) / 2, 5);
        double scale = once.Max(Math.Abs);
        for (int i = 0; i < once.Length; i++)
            Assert.True(Math.Abs(once[i] - model.Parameters.Gradients[i]) <= 1e-5 * scale, $"gradient {i}");
    }

    /// <summary>
    /// A tiny model memorizes one 24-token sequence: from ln(16) ≈ 2.77 to below 0.1 within 150 updates. A broken
    /// backward, optimizer or schedule stalls far above that.
    /// </summary>
    [Theory]
    [InlineData(ModelFamily.Gpt2)]
    [InlineData(ModelFamily.Llama)]
    public void TinyModelMemorizesASequence(ModelFamily family)
    {
        var config = new TrainingConfig { Family = family, Layers = 2, Dim = 32, Heads = 4, KvHeads = family == ModelFamily.Llama ? 2 : 0, Vocab = 16, Context = 24 };
        var model = TrainableModel<float>.Create(config, null);
        model.Initialize(new TrainingRandom(7));
        var adam = new AdamW(model.Parameters, new AdamWOptions { WeightDecay = 0 });
        var schedule = new LearningRateSchedule(1e-2f, 1e-3f, 10, 150);
        var rng = new Random(11);
        int[] sequence = Enumerable.Range(0, 25).Select(_ => rng.Next(16)).ToArray();
        double first = double.NaN, loss = double.NaN;
        for (int step = 0; step < 150; step++)
        {
            model.ZeroGradients();
            loss = model.Forward(sequence.AsSpan(0, 24), sequence.AsSpan(1, 24), 1, 24);
            if (step == 0)
                first = loss;
            model.Backward();
            GradientClipping.Clip(model.Parameters.Gradients, 1f);
            adam.Update(schedule.At(step));
        }
        Assert.InRange(first, 2.5, 3.1);
        Assert.True(loss < 0.1, $"loss after 150 steps: {loss}");
    }
}
