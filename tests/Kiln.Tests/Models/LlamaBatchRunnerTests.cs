using Kiln.Compute;
using Kiln.Models;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Tests.Models;

/// <summary>The serving runner: batch invariance (bitwise) and agreement with the single-sequence context.</summary>
public sealed unsafe class LlamaBatchRunnerTests : IDisposable
{
    private const int BlockSize = 16;
    private const int BlocksPerSequence = 4; // the random models' context of 64
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-runner-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly int[] Target = [1, 259, 260, 261, 262, 72, 101, 108, 108, 111, 263, 264, 265];

    private (LlamaModel Model, RandomLlama Spec) Load(GgmlType type, int kvHeads = 2)
    {
        var spec = new RandomLlama { WeightType = type, KvHeads = kvHeads, Dim = 64, Ffn = 96 };
        return (LlamaModel.Load(spec.Write(Path.Combine(_dir, $"{type}-{kvHeads}.gguf"))), spec);
    }

    private static int[] Blocks(int sequence) => Enumerable.Range(sequence * BlocksPerSequence, BlocksPerSequence).ToArray();

    private static int[] RandomTokens(Random rng, int count, int vocab) => Enumerable.Range(0, count).Select(_ => rng.Next(vocab)).ToArray();

    /// <summary>Logits of the target sequence's prompt and of three decode steps after it, run alone.</summary>
    private static float[][] Alone(LlamaBatchRunner runner, int vocab)
    {
        var results = new List<float[]>();
        var logits = new float[vocab];
        runner.Run([new PagedChunk(0, Target, 0, Blocks(0), PagedOutput.Logits)], logits, default);
        results.Add([.. logits]);
        for (int i = 0; i < 3; i++)
        {
            runner.Run([new PagedChunk(0, [150 + i], Target.Length + i, Blocks(0), PagedOutput.Logits)], logits, default);
            results.Add([.. logits]);
        }
        return [.. results];
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    public void ASequenceGetsTheSameBitsAloneAndInAnyBatch(GgmlType type)
    {
        var (model, spec) = Load(type);
        using var _ = model;
        using var pool = new WorkerPool(2);
        using var cache = new PagedKvCache(spec.Layers, model.Config.KvDim, 17 * BlocksPerSequence, BlockSize, KvCacheType.F16);
        var runner = new LlamaBatchRunner(model, cache, pool, maxBatchTokens: 256, contextLength: 64);
        int vocab = spec.Vocab;
        float[][] alone = Alone(runner, vocab);

        var rng = new Random(7);
        for (int batch = 1; batch <= 16; batch++)
        {
            // Others: sequences 1..batch-1 with prompts of assorted lengths, some outputs wanted, some not.
            var others = Enumerable.Range(1, batch - 1).Select(s => RandomTokens(rng, 1 + rng.Next(20), vocab)).ToArray();
            // The target's prompt is split at a batch-dependent point (chunked prefill), the first part run with half the others.
            int split = batch % Target.Length;
            var first = new List<PagedChunk>();
            var second = new List<PagedChunk>();
            for (int s = 1; s < batch; s++)
            {
                var chunk = new PagedChunk(s, others[s - 1], 0, Blocks(s), s % 3 == 0 ? PagedOutput.None : PagedOutput.Logits);
                (s % 2 == 0 ? first : second).Add(chunk);
            }
            if (split > 0)
                first.Insert(first.Count / 2, new PagedChunk(0, Target[..split], 0, Blocks(0), PagedOutput.None));
            second.Insert(second.Count / 2, new PagedChunk(0, Target[split..], split, Blocks(0), PagedOutput.Logits));

            var logits = new float[batch * vocab];
            runner.Run(first, logits, default);
            runner.Run(second, logits, default);
            int at = second.Where(c => c.Output == PagedOutput.Logits).ToList().FindIndex(c => c.SequenceId == 0);
            Assert.True(alone[0].AsSpan().SequenceEqual(logits.AsSpan(at * vocab, vocab)), $"{type}, batch {batch}: prompt logits differ");

            // Decode steps: every sequence adds one token; the target sits last.
            for (int i = 0; i < 3; i++)
            {
                var step = new List<PagedChunk>();
                for (int s = 1; s < batch; s++)
                    step.Add(new PagedChunk(s, [200 + s], others[s - 1].Length + i, Blocks(s), PagedOutput.Logits));
                step.Add(new PagedChunk(0, [150 + i], Target.Length + i, Blocks(0), PagedOutput.Logits));
                runner.Run(step, logits, default);
                Assert.True(alone[i + 1].AsSpan().SequenceEqual(logits.AsSpan((batch - 1) * vocab, vocab)), $"{type}, batch {batch}: decode {i} logits differ");
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.F32, 2)]
    [InlineData(GgmlType.F16, 1)]
    [InlineData(GgmlType.Q4_0, 4)]
    public void LogitsAgreeWithTheSingleSequenceContext(GgmlType type, int kvHeads)
    {
        var (model, spec) = Load(type, kvHeads);
        using var _ = model;
        using var pool = new WorkerPool(2);
        using var cache = new PagedKvCache(spec.Layers, model.Config.KvDim, 2 * BlocksPerSequence, BlockSize, KvCacheType.F16);
        var runner = new LlamaBatchRunner(model, cache, pool, maxBatchTokens: 64, contextLength: 64);
        using var context = new LlamaContext(model, new LlamaContextOptions { Pool = pool, ContextLength = 64 });
        int vocab = spec.Vocab;
        float[][] paged = Alone(runner, vocab);
        var expected = new float[vocab];
        context.Evaluate(Target, expected);
        AssertClose(expected, paged[0]);
        for (int i = 0; i < 3; i++)
        {
            context.Evaluate([150 + i], expected);
            AssertClose(expected, paged[i + 1]);
        }

        static void AssertClose(float[] expected, float[] actual)
        {
            float scale = expected.Max(Math.Abs);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4 * scale, $"logit {i}: context {expected[i]}, runner {actual[i]}");
        }
    }

    [Fact]
    public void RefusesStepsItCannotRunSafely()
    {
        var (model, spec) = Load(GgmlType.F32);
        using var _ = model;
        using var pool = new WorkerPool(1);
        using var cache = new PagedKvCache(spec.Layers, model.Config.KvDim, 2, BlockSize, KvCacheType.F16);
        var runner = new LlamaBatchRunner(model, cache, pool, maxBatchTokens: 8, contextLength: 32);
        var logits = new float[spec.Vocab];
        // Position 16 needs a second block the table does not have.
        Assert.Throws<ArgumentException>(() => runner.Run([new PagedChunk(0, [5, 6], 15, [0], PagedOutput.Logits)], logits, default));
        Assert.Throws<ArgumentException>(() => runner.Run([new PagedChunk(0, new int[9], 0, [0], PagedOutput.Logits)], logits, default));
        Assert.Throws<ContextOverflowException>(() => runner.Run([new PagedChunk(0, [5], 32, [0, 1, 1], PagedOutput.Logits)], logits, default));
        Assert.Throws<ArgumentOutOfRangeException>(() => runner.Run([new PagedChunk(0, [spec.Vocab], 0, [0], PagedOutput.Logits)], logits, default));
        // Head size 16 is not a whole Q8_0 block.
        using var q8 = new PagedKvCache(spec.Layers, model.Config.KvDim, 2, BlockSize, KvCacheType.Q8_0);
        Assert.Throws<ArgumentException>(() => new LlamaBatchRunner(model, q8, pool, 8, 32));
    }

    [Fact]
    public void HiddenStatesComeOutForEveryTokenOfAnEmbeddingChunk()
    {
        var (model, spec) = Load(GgmlType.F32);
        using var _ = model;
        using var pool = new WorkerPool(2);
        using var cache = new PagedKvCache(spec.Layers, model.Config.KvDim, 2 * BlocksPerSequence, BlockSize, KvCacheType.F16);
        var runner = new LlamaBatchRunner(model, cache, pool, maxBatchTokens: 64, contextLength: 64);
        int dim = spec.Dim;
        var all = new float[Target.Length * dim];
        runner.Run([new PagedChunk(1, Target, 0, Blocks(1), PagedOutput.Hidden)], default, all);
        // The last token's hidden state gives the logits of the same prompt run for logits (output = W · h).
        var logits = new float[spec.Vocab];
        runner.Run([new PagedChunk(0, Target, 0, Blocks(0), PagedOutput.Logits)], logits, default);
        var w = spec.Weights["output.weight"];
        var last = all.AsSpan((Target.Length - 1) * dim, dim);
        for (int v = 0; v < spec.Vocab; v += 17)
        {
            double dot = 0;
            for (int d = 0; d < dim; d++)
                dot += w[v * dim + d] * last[d];
            Assert.Equal(dot, logits[v], 1e-3);
        }
        Assert.NotEqual(all.AsSpan(0, dim).ToArray(), last.ToArray());
    }

    [Fact]
    public void BatchInvariantMatMulGivesOneRowTheBitsOfItsBatch()
    {
        using var pool = new WorkerPool(2);
        var rng = new Random(3);
        int rows = 40, cols = 72;
        var weights = new float[rows * cols];
        for (int i = 0; i < weights.Length; i++) weights[i] = (float)(rng.NextDouble() * 2 - 1);
        var x = new float[6 * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        fixed (float* p = weights)
        {
            var w = new WeightMatrix("w", GgmlType.F32, rows, cols, (byte*)p);
            var batched = new float[6 * rows];
            var one = new float[rows];
            new MatMul(pool).Run(w, x, 6, batched);
            new MatMul(pool) { BatchInvariant = true }.Run(w, x.AsSpan(5 * cols, cols), 1, one);
            Assert.Equal(batched.AsSpan(5 * rows, rows).ToArray(), one);
            // The default (llama.cpp's one-row order) differs somewhere: that is why the mode exists.
            new MatMul(pool).Run(w, x.AsSpan(5 * cols, cols), 1, one);
            Assert.NotEqual(batched.AsSpan(5 * rows, rows).ToArray(), one);
        }
    }
}
