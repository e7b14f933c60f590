using System.Text.Json;
using Kiln.Models.Llama;
using Kiln.Tokenizers;
using Xunit.Abstractions;

namespace Kiln.Tests.Models;

/// <summary>
/// The whole forward pass on K-quant weights against llama.cpp: the tiny256 model quantized by llama-quantize to each
/// K type (and to the Q4_K_M mix of Q4_K and Q6_K), fed llama.cpp's prompt ids and, teacher-forced, its greedy
/// continuation; the top-5 log-probabilities llama-server reported at each step must agree within 0.01. Measured:
/// at most 1.6e-6 on every file, because the K-quant dots reproduce ggml's float order bit for bit (see
/// KQuantLanes). The margin is not slack for a looser kernel: this random model amplifies one-ulp differences
/// into 0.01–0.05 jumps at isolated steps (a plain vector reduction failed here on four of the six files).
/// </summary>
public class KQuantReferenceTests(ITestOutputHelper output)
{
    private const double Tolerance = 0.01;

    public static TheoryData<string> Files() => new(
        "tiny256-Q2_K-pure.gguf", "tiny256-Q3_K-pure.gguf", "tiny256-Q4_K-pure.gguf",
        "tiny256-Q5_K-pure.gguf", "tiny256-Q6_K-pure.gguf", "tiny256-Q4_K_M.gguf");

    private sealed record Step(int Id, (int Id, double LogProb)[] Top);

    [SharedTheory]
    [MemberData(nameof(Files))]
    public void TeacherForcedLogProbabilitiesTrackLlamaCpp(string file)
    {
        using JsonDocument refs = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "quant", "quant_refs.json")));
        JsonElement greedy = refs.RootElement.GetProperty("outputs").EnumerateArray()
            .Single(o => o.GetProperty("file").GetString() == file).GetProperty("greedy");
        int[] prompt = greedy.GetProperty("prompt_ids_with_bos").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] generated = greedy.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Step[] top5 = greedy.GetProperty("top5").EnumerateArray().Select(s => new Step(
            s.GetProperty("id").GetInt32(),
            s.GetProperty("top").EnumerateArray().Select(p => (p[0].GetInt32(), p[1].GetDouble())).ToArray())).ToArray();

        using var model = LlamaModel.Load(SharedData.Path("refs", "quant", file));
        int[] steps = StepsWithProbabilities(Tokenizer.FromGguf(model.File), generated);
        Assert.Equal(top5.Length, steps.Length);
        for (int k = 0; k < steps.Length; k++)
            Assert.Equal(top5[k].Id, generated[steps[k]]);

        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
        var logits = new float[context.VocabSize];
        context.Evaluate(prompt, logits);
        double worst = 0;
        int compared = 0, next = 0;
        for (int i = 0; i < generated.Length; i++)
        {
            if (next < steps.Length && steps[next] == i)
            {
                double[] logProbs = ReferenceLogSoftmax.Of(logits);
                foreach (var (id, expected) in top5[next].Top)
                {
                    double diff = Math.Abs(logProbs[id] - expected);
                    Assert.True(diff < Tolerance, $"{file}, step {i}, token {id}: kiln {logProbs[id]:F5}, llama.cpp {expected:F5}");
                    worst = Math.Max(worst, diff);
                    compared++;
                }
                next++;
            }
            context.Evaluate([generated[i]], logits);
        }
        output.WriteLine($"{file}: max |Δ log-prob| {worst:E2} over {compared} values at {steps.Length} of {generated.Length} steps");
        Assert.Equal(5 * top5.Length, compared);
    }

    /// <summary>
    /// The generated positions llama-server reports probabilities for: it holds back (and never reports) a token
    /// after which the text so far ends inside a UTF-8 character, judged as its validate_utf8 does from the last
    /// lead byte within the final four bytes.
    /// </summary>
    private static int[] StepsWithProbabilities(Tokenizer tokenizer, int[] generated)
    {
        var text = new List<byte>();
        var piece = new byte[Math.Max(256, tokenizer.MaxPieceBytes)];
        var steps = new List<int>();
        for (int i = 0; i < generated.Length; i++)
        {
            int n = tokenizer.DecodeTokenBytes(generated[i], piece);
            text.AddRange(piece.AsSpan(0, n));
            if (EndsWithCompleteCharacter(text))
                steps.Add(i);
        }
        return [.. steps];
    }

    private static bool EndsWithCompleteCharacter(List<byte> text)
    {
        for (int i = 1; i <= 4 && i <= text.Count; i++)
        {
            byte c = text[^i];
            if ((c & 0xE0) == 0xC0 && i < 2 || (c & 0xF0) == 0xE0 && i < 3 || (c & 0xF8) == 0xF0 && i < 4)
                return false;
        }
        return true;
    }
}
