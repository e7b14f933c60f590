using Kiln.Threading;
using Kiln.Training;
using Kiln.Training.Models;

namespace Kiln.Tests.Training;

/// <summary>Whole-model gradients in float64 against finite differences, a few sampled elements of every tensor.</summary>
public sealed class ModelGradientTests
{
    internal static TrainingConfig Tiny(ModelFamily family) => new()
    {
        Family = family,
        Layers = 2,
        Dim = 12,
        Heads = family == ModelFamily.Llama ? 6 : 3,
        KvHeads = family == ModelFamily.Llama ? 2 : 0,
        Ffn = 20,
        Vocab = 11,
        Context = 8,
    };

    /// <summary>
    /// Weights of order one rather than GPT-2's 0.02, so every path carries a gradient well above the check's 1e-7
    /// absolute floor (with 0.02-scale weights the deeper terms shrink to ~1e-6 and would hide a wrong sign).
    /// </summary>
    private static void Randomize(TrainableModel<double> model, int seed)
    {
        var rng = new Random(seed);
        foreach (var p in model.Parameters.Tensors)
        {
            var v = model.Parameters.Value(p).Span;
            bool gain = p.Shape.Length == 1 && (p.Name.Contains("norm") || p.Name.Contains("ln_"));
            for (int i = 0; i < v.Length; i++)
                v[i] = (gain ? 1.0 : 0.0) + (rng.NextDouble() * 2 - 1) * (p.Shape.Length == 1 ? 0.3 : 0.5);
        }
    }

    [Theory]
    [InlineData(ModelFamily.Gpt2, false)]
    [InlineData(ModelFamily.Gpt2, true)]
    [InlineData(ModelFamily.Llama, false)]
    [InlineData(ModelFamily.Llama, true)]
    public void BackwardMatchesFiniteDifferences(ModelFamily family, bool recompute)
    {
        const int batch = 2, seq = 7;
        using var pool = new WorkerPool(2);
        var model = TrainableModel<double>.Create(Tiny(family), pool, recompute);
        Randomize(model, 1);
        var rng = new Random(2);
        int[] inputs = Enumerable.Range(0, batch * seq).Select(_ => rng.Next(11)).ToArray();
        int[] targets = Enumerable.Range(0, batch * seq).Select(_ => rng.Next(11)).ToArray();
        double Loss() => model.Forward(inputs, targets, batch, seq);

        model.ZeroGradients();
        Loss();
        model.Backward();
        double[] analytic = (double[])model.Parameters.Gradients.Clone();
        foreach (var p in model.Parameters.Tensors)
        {
            double[] values = model.Parameters.Value(p).ToArray();
            double[] grads = analytic.AsSpan(p.Offset, p.Length).ToArray();
            // finite differences perturb the live parameter buffer through a copy-back loss
            double ViewLoss()
            {
                values.CopyTo(model.Parameters.Values, p.Offset);
                return Loss();
            }
            GradientCheck.Verify(p.Name, values, grads, ViewLoss, stride: Math.Max(1, p.Length / 5));
            values.CopyTo(model.Parameters.Values, p.Offset);
        }
    }

    [Theory]
    [InlineData(ModelFamily.Gpt2)]
    [InlineData(ModelFamily.Llama)]
    public void ThreadCountDoesNotChangeBits(ModelFamily family)
    {
        float[] Run(WorkerPool? pool)
        {
            var model = TrainableModel<float>.Create(Tiny(family), pool);
            model.Initialize(new TrainingRandom(5));
            int[] tokens = Enumerable.Range(0, 3 * 8).Select(i => i * 7 % 11).ToArray();
            int[] targets = tokens.Select(t => (t + 1) % 11).ToArray();
            model.ZeroGradients();
            float loss = (float)model.Forward(tokens, targets, 3, 8);
            model.Backward();
            return [loss, .. model.Parameters.Gradients];
        }
        using var pool = new WorkerPool(3);
        Assert.Equal(Run(null), Run(pool));
    }

    [Fact]
    public void GptTiesOutputToEmbeddingAndLlamaDoesNot()
    {
        var gpt = TrainableModel<float>.Create(Tiny(ModelFamily.Gpt2), null);
        var llama = TrainableModel<float>.Create(Tiny(ModelFamily.Llama), null);
        Assert.DoesNotContain(gpt.Parameters.Tensors, t => t.Name.StartsWith("output", StringComparison.Ordinal));
        Assert.Contains(llama.Parameters.Tensors, t => t.Name == "output.weight");
        Assert.Equal(gpt.Parameters.Count, gpt.Parameters.Tensors.Sum(t => t.Length));
        // GPT-2 with 11·12 + 8·12 embeddings, per layer 2·12 + 36·12 + 36 + 144 + 12 + 2·12 + 20·12 + 20 + 12·20 + 12, final 2·12
        Assert.Equal(11 * 12 + 8 * 12 + 2 * (24 + 432 + 36 + 144 + 12 + 24 + 240 + 20 + 240 + 12) + 24, gpt.Parameters.Count);
    }

    [Theory]
    [InlineData("""{"layers":2,"dim":100,"heads":6,"vocab":10,"context":8}""", "heads (6) must divide dim (100)")]
    [InlineData("""{"layers":2,"dim":96,"heads":6,"kvHeads":4,"vocab":10,"context":8}""", "kvHeads (4) must divide heads (6)")]
    [InlineData("""{"family":"gpt2","layers":2,"dim":96,"heads":6,"kvHeads":2,"vocab":10,"context":8}""", "GPT-2 has no grouped KV heads")]
    [InlineData("""{"layers":0,"dim":96,"heads":6,"vocab":10,"context":8}""", "layers must be positive")]
    [InlineData("""{"layers":2,"dim":90,"heads":6,"vocab":10,"context":8}""", "even head dimension")]
    [InlineData("""{"layers":2,"dim":96,"heads":6,"vocab":10,"context":8,"kvheads":2}""", "kvheads")]
    public void BadConfigurationsSayWhatIsWrong(string json, string message)
    {
        var e = Assert.Throws<TrainingConfigException>(() => TrainingConfig.FromJson(json));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void ConfigRoundTripsThroughJson()
    {
        var c = Tiny(ModelFamily.Gpt2);
        Assert.Equal(c, TrainingConfig.FromJson(c.ToJson()));
        Assert.Contains("\"family\": \"gpt2\"", c.ToJson());
    }
}
