using System.Text.Json;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Xunit.Abstractions;

namespace Kiln.Tests.Models;

/// <summary>
/// The tiny256 model in F32 and quantized by llama.cpp to Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1, run by Kiln against
/// llama-server's top-5 log-probabilities. The random model's logits are nearly tied, so Kiln is teacher-forced
/// along llama.cpp's own greedy tokens and compared token by token, never by argmax order.
/// </summary>
/// <remarks>
/// Issue 3 asks for 0.01; Kiln holds 1e-4 at every step (measured max 1.5e-6 over all files) because its quantized
/// dots sum in llama.cpp's orders and its activations round as llama.cpp's AVX2 quantizer does. Before that, one
/// activation landing 3e-5 from a Q8 rounding boundary was enough to move a whole run by 1.6e-2, so this bound
/// catches any drift in those orders, not only gross kernel errors.
/// </remarks>
public class LegacyQuantReferenceTests(ITestOutputHelper output)
{
    private sealed record Step(int Id, (int Id, double LogProb)[] Top);

    public static TheoryData<string, GgmlType> Files() => new()
    {
        { "tiny256-f32.gguf", GgmlType.F32 },
        { "tiny256-Q8_0-pure.gguf", GgmlType.Q8_0 },
        { "tiny256-Q8_0.gguf", GgmlType.Q8_0 },
        { "tiny256-Q4_0-pure.gguf", GgmlType.Q4_0 },
        { "tiny256-Q4_1-pure.gguf", GgmlType.Q4_1 },
        { "tiny256-Q5_0-pure.gguf", GgmlType.Q5_0 },
        { "tiny256-Q5_1-pure.gguf", GgmlType.Q5_1 },
    };

    [SharedTheory]
    [MemberData(nameof(Files))]
    public void TeacherForcedLogProbabilitiesTrackLlamaCpp(string file, GgmlType type)
    {
        using JsonDocument refs = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "quant", "quant_refs.json")));
        JsonElement greedy = refs.RootElement.GetProperty("outputs").EnumerateArray()
            .Single(o => o.GetProperty("file").GetString() == file).GetProperty("greedy");
        int[] prompt = greedy.GetProperty("prompt_ids_with_bos").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] generated = greedy.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Step[] steps = greedy.GetProperty("top5").EnumerateArray().Select(s => new Step(
            s.GetProperty("id").GetInt32(),
            s.GetProperty("top").EnumerateArray().Select(t => (t[0].GetInt32(), t[1].GetDouble())).ToArray())).ToArray();

        using var model = LlamaModel.Load(SharedData.Path("refs", "quant", file));
        Assert.Equal(type, model.Layers[0].Query.Type); // the file really holds the type under test
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
        var logits = new float[model.Config.VocabSize];
        context.Evaluate(prompt, logits);
        var logProbs = new List<double[]>();
        foreach (int token in generated)
        {
            logProbs.Add(ReferenceLogSoftmax.Of(logits));
            context.Evaluate([token], logits);
        }

        // llama-server leaves out the probabilities of a token after which the text ends inside a UTF-8
        // sequence (byte tokens), so its entries are the generated steps in order with some skipped: each
        // entry belongs to the next step that sampled its id.
        Assert.Equal(generated[0], steps[0].Id);
        double maxDiff = 0;
        int step = 0;
        foreach (Step s in steps)
        {
            while (step < generated.Length && generated[step] != s.Id)
                step++;
            Assert.True(step < generated.Length, $"{file}: llama.cpp's entry for token {s.Id} matches no generated step");
            const double tolerance = 1e-4;
            foreach ((int id, double logProb) in s.Top)
            {
                double diff = Math.Abs(logProbs[step][id] - logProb);
                maxDiff = Math.Max(maxDiff, diff);
                Assert.True(diff < tolerance, $"{file}, step {step}, token {id}: kiln {logProbs[step][id]:F6}, llama.cpp {logProb:F6}");
            }
            step++;
        }
        Assert.True(steps.Length >= 12, $"{file}: only {steps.Length} steps compared");
        output.WriteLine($"{file}: {steps.Length} of {generated.Length} steps, max |Δ log-prob| {maxDiff:E2}");
    }
}
