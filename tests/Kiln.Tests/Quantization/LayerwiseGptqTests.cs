using Kiln.Models.Llama;
using Kiln.Quantization;
using Kiln.Tests.TestSupport;
using Kiln.Tokenizers;

namespace Kiln.Tests.Quantization;

/// <summary>
/// Layer-by-layer GPTQ of stories260K to Q4_0, calibrated on Shakespeare (not the text it is measured on): the
/// mean KL divergence from the F32 model's next-token distributions on TinyStories text is clearly below
/// round-to-nearest's, and the imatrix variant's too.
/// </summary>
public sealed class LayerwiseGptqTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-gptq-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [SharedFact]
    public void GptqAndImatrixLoseLessThanRoundToNearest()
    {
        string f32 = SharedData.Path("models", "stories260K.gguf");
        string calibration = new(File.ReadAllText(SharedData.Path("corpus", "tinyshakespeare.txt")).AsSpan(0, 200_000));
        var options = new QuantizationOptions { Mix = QuantizationMix.Parse("Q4_0"), Threads = 2 };

        string rtn = Path.Combine(_dir, "rtn.gguf"), gptq = Path.Combine(_dir, "gptq.gguf"), weighted = Path.Combine(_dir, "imatrix.gguf");
        GgufQuantizer.Quantize(f32, rtn, options);
        var done = LayerwiseGptq.Run(f32, options, new GptqCalibration(calibration) { Samples = 128 });
        Assert.Equal(5 * 7, done.Count); // every block weight; ffn_down (rows of 172) in its F16 fallback, rounded
        GgufQuantizer.Quantize(f32, gptq, options with { Precomputed = done });

        ImportanceMatrix matrix;
        using (var model = LlamaModel.Load(f32))
        {
            var collector = new ImportanceMatrixCollector();
            int chunks = CalibrationRun.Run(model, Tokenizer.FromGguf(model.File), calibration, 128, 128, 2, collector);
            matrix = collector.ToMatrix(chunks, "shakespeare");
        }
        GgufQuantizer.Quantize(f32, weighted, options with { Importance = matrix });

        string text = File.ReadAllText(PerplexityReference.TextPath)[..12000];
        float[][] reference = Distributions(f32, text);
        double kRtn = MeanKl(reference, Distributions(rtn, text));
        double kGptq = MeanKl(reference, Distributions(gptq, text));
        double kImatrix = MeanKl(reference, Distributions(weighted, text));
        Assert.True(kGptq < 0.85 * kRtn, $"GPTQ KLD {kGptq:G4} vs RTN {kRtn:G4}");
        Assert.True(kImatrix < kRtn, $"imatrix KLD {kImatrix:G4} vs RTN {kRtn:G4}");
    }

    /// <summary>Softmax of every position's logits over chunks of 128 tokens.</summary>
    private static float[][] Distributions(string path, string text)
    {
        using var model = LlamaModel.Load(path);
        var tokenizer = Tokenizer.FromGguf(model.File);
        int[] tokens = [tokenizer.BosId, .. tokenizer.Encode(text, addSpecial: false)];
        int vocab = model.Config.VocabSize;
        var result = new List<float[]>();
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, MaxBatch = 128, Threads = 2 });
        var logits = new float[128 * vocab];
        for (int c = 0; c + 128 <= tokens.Length; c += 128)
        {
            context.Reset();
            context.Evaluate(tokens.AsSpan(c, 128), logits, allLogits: true);
            for (int t = 0; t < 128; t++)
            {
                var p = logits.AsSpan(t * vocab, vocab).ToArray();
                float max = p.Max();
                double sum = 0;
                for (int i = 0; i < vocab; i++)
                    sum += p[i] = MathF.Exp(p[i] - max);
                for (int i = 0; i < vocab; i++)
                    p[i] = (float)(p[i] / sum);
                result.Add(p);
            }
        }
        return [.. result];
    }

    private static double MeanKl(float[][] p, float[][] q)
    {
        double total = 0;
        for (int t = 0; t < p.Length; t++)
        {
            for (int i = 0; i < p[t].Length; i++)
            {
                if (p[t][i] > 0)
                    total += p[t][i] * Math.Log(p[t][i] / Math.Max(q[t][i], 1e-30));
            }
        }
        return total / p.Length;
    }
}
