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
    [InlineData(ModelFamily.Gpt2, Recomputation.None)]
    [InlineData(ModelFamily.Gpt2, Recomputation.Attention)]
    [InlineData(ModelFamily.Gpt2, Recomputation.Block)]
    [InlineData(ModelFamily.Gpt2, Recomputation.Attention | Recomputation.Block)]
    [InlineData(ModelFamily.Llama, Recomputation.None)]
    [InlineData(ModelFamily.Llama, Recomputation.Attention)]
    [InlineData(ModelFamily.Llama, Recomputation.Block)]
    [InlineData(ModelFamily.Llama, Recomputation.Attention | Recomputation.Block)]
    public void BackwardMatchesFiniteDifferences(ModelFamily family, Recomputation recompute)
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

    /// <summary>
    /// Block recomputation re-runs the same deterministic forward ops, so the gradients must be the bits of the same
    /// model keeping every block's activations (attention recomputation rebuilds probabilities as exp(s − lse), not
    /// e/Σe, so it is compared with itself, not with stored probabilities: <see cref="BackwardMatchesFiniteDifferences"/> covers it);
    /// three layers so that a middle block is recomputed between two others, with a second step on the same model
    /// to catch buffers left stale by the first.
    /// </summary>
    [Theory]
    [InlineData(ModelFamily.Gpt2, Recomputation.Block)]
    [InlineData(ModelFamily.Gpt2, Recomputation.Attention | Recomputation.Block)]
    [InlineData(ModelFamily.Llama, Recomputation.Block)]
    [InlineData(ModelFamily.Llama, Recomputation.Attention | Recomputation.Block)]
    public void RecomputationGivesTheStoredPathsBits(ModelFamily family, Recomputation recompute)
    {
        var config = Tiny(family) with { Layers = 3 };
        float[] Run(Recomputation r, WorkerPool pool)
        {
            var model = TrainableModel<float>.Create(config, pool, r);
            model.Initialize(new TrainingRandom(5));
            var result = new List<float>();
            for (int step = 0; step < 2; step++)
            {
                int[] tokens = Enumerable.Range(0, 3 * 8).Select(i => (i * 7 + step) % 11).ToArray();
                int[] targets = tokens.Select(t => (t + 1) % 11).ToArray();
                model.ZeroGradients();
                result.Add((float)model.Forward(tokens, targets, 3, 8));
                model.Backward();
                result.AddRange(model.Parameters.Gradients);
                // move the weights, so the second step's recomputation must see the new ones
                for (int i = 0; i < model.Parameters.Count; i++)
                    model.Parameters.Values[i] -= 0.1f * model.Parameters.Gradients[i];
            }
            return [.. result];
        }
        using var pool = new WorkerPool(2);
        float[] stored = Run(recompute & ~Recomputation.Block, pool);
        Assert.Contains(stored, g => g != 0);
        Assert.Equal(stored, Run(recompute, pool));
    }

    /// <summary>
    /// Activation bytes counted by hand for GPT-2 with L layers, rows R = B·T, C, F, H: each block keeps LayerNorm
    /// outputs and statistics, qkv, probabilities, lse, attention, projection, mid, fc, gelu and fc-proj; block
    /// recomputation keeps one block's worth for all layers.
    /// </summary>
    [Fact]
    public void BlockRecomputationKeepsOneBlocksActivations()
    {
        var config = Tiny(ModelFamily.Gpt2) with { Layers = 4 };
        const int b = 3, t = 8, rows = b * t;
        int c = config.Dim, f = config.FfnDim, h = config.Heads, v = config.Vocab, layers = config.Layers;
        long perBlock = 2 * (rows * c + 2 * rows) + rows * 3 * c + b * h * t * t + b * h * t + 3 * rows * c + 2 * rows * f + rows * c;
        long scratch = 2 * rows + 2 * rows * f + 3 * rows * c + rows * 3 * c;            // lnf stats; dGelu, dFc; dLn2, dAtt, dLn1; dQkv
        long common = (layers + 4L) * rows * c + rows * v + rows;                       // stream, final, dFinal, dStream; logits; losses
        long ints = 2L * rows * sizeof(int);
        long Bytes(Recomputation r)
        {
            var model = TrainableModel<float>.Create(config, null, r);
            int[] tokens = new int[rows];
            model.Forward(tokens, tokens, b, t);
            return model.ActivationBytes;
        }
        Assert.Equal((layers * perBlock + scratch + common) * 4 + ints, Bytes(Recomputation.None));
        Assert.Equal((perBlock + scratch + common) * 4 + ints, Bytes(Recomputation.Block));
        Assert.Equal((layers * (perBlock - b * h * t * t) + scratch + common) * 4 + ints, Bytes(Recomputation.Attention));
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
