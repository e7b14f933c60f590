using System.Text.Json;

namespace Kiln.Tests.TestSupport;

/// <summary>llama.cpp's outputs for stories260K (../shared/refs): prompt ids, greedy continuations, top-5 log-probs.</summary>
public static class StoriesReferences
{
    public sealed record TopLogProb(int Id, double LogProb);

    public sealed record Position(int Id, double LogProb, TopLogProb[] Top);

    public sealed record Case(string Prompt, int[] PromptIds, int[] GeneratedIds, string GeneratedText, Position[] Positions);

    public static string ModelPath => SharedData.Path("models", "stories260K.gguf");

    private static readonly Lazy<IReadOnlyList<Case>> Loaded = new(Load);

    public static IReadOnlyList<Case> Cases => Loaded.Value;

    /// <summary>Prompt indices, for theories (resolved lazily so a missing ../shared only skips).</summary>
    public static IEnumerable<object[]> Indices() => Enumerable.Range(0, 5).Select(i => new object[] { i });

    private static IReadOnlyList<Case> Load()
    {
        using var refs = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "stories260K_refs.json")));
        using var probs = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "stories260K_top5_probs.json")));
        var cases = new List<Case>();
        var probPrompts = probs.RootElement.GetProperty("prompts").EnumerateArray().ToList();
        foreach (var p in refs.RootElement.GetProperty("prompts").EnumerateArray())
        {
            string prompt = p.GetProperty("prompt").GetString()!;
            var pp = probPrompts.Single(x => x.GetProperty("prompt").GetString() == prompt);
            var positions = pp.GetProperty("completion_probabilities").EnumerateArray().Select(c => new Position(
                c.GetProperty("id").GetInt32(),
                c.GetProperty("logprob").GetDouble(),
                c.GetProperty("top_logprobs").EnumerateArray()
                    .Select(t => new TopLogProb(t.GetProperty("id").GetInt32(), t.GetProperty("logprob").GetDouble())).ToArray())).ToArray();
            cases.Add(new Case(
                prompt,
                p.GetProperty("prompt_ids_with_bos").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.GetProperty("generated_text").GetString()!,
                positions));
        }
        return cases;
    }
}
