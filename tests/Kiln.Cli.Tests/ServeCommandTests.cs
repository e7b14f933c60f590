using System.Net;
using System.Text;
using System.Text.Json;
using Kiln.Cli.Commands;

namespace Kiln.Cli.Tests;

/// <summary><c>kiln serve</c> end to end on the real stories260K model, through the engine the command builds.</summary>
public class ServeCommandTests
{
    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    [SharedFact]
    public async Task ServesGreedyTextLlamaCppProducesAndSchemaValidJson()
    {
        var log = new StringWriter();
        var listening = new TaskCompletionSource<Uri>();
        using var stop = new CancellationTokenSource();
        var settings = new ServeSettings { ModelPath = StoriesReferences.ModelPath, Port = 0, Alias = "stories", Threads = 1 };
        Task<int> serving = ServeCommand.RunAsync(settings, TextWriter.Synchronized(log), listening.SetResult, stop.Token);
        using var http = new HttpClient { BaseAddress = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30)) };
        for (int i = 0; i < 200 && (await http.GetAsync("health")).StatusCode != HttpStatusCode.OK; i++)
            await Task.Delay(50);

        // Greedy completion of each reference prompt: llama.cpp's 48 tokens.
        foreach (StoriesReferences.Case reference in StoriesReferences.Cases.Take(2))
        {
            string body = JsonSerializer.Serialize(new { model = "stories", prompt = reference.Prompt, max_tokens = reference.GeneratedIds.Length, temperature = 0 });
            using var response = await http.PostAsync("v1/completions", Json(body));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal(reference.GeneratedText, document.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
        }

        // A real model under a JSON schema: the reply is whole, parses and has the declared shape.
        const string chat = """
            {"model":"stories","messages":[{"role":"user","content":"Is Lily happy?"}],"max_tokens":100,"seed":3,
             "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object",
               "properties":{"happy":{"type":"boolean"},"mood":{"enum":["good","bad"]},"age":{"type":"integer"}},
               "required":["happy","mood"],"additionalProperties":false}}}}
            """;
        using var reply = await http.PostAsync("v1/chat/completions", Json(chat));
        Assert.Equal(HttpStatusCode.OK, reply.StatusCode);
        using var replyDocument = JsonDocument.Parse(await reply.Content.ReadAsStringAsync());
        JsonElement choice = replyDocument.RootElement.GetProperty("choices")[0];
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        using var content = JsonDocument.Parse(choice.GetProperty("message").GetProperty("content").GetString()!);
        Assert.True(content.RootElement.GetProperty("happy").ValueKind is JsonValueKind.True or JsonValueKind.False);
        Assert.Contains(content.RootElement.GetProperty("mood").GetString(), new[] { "good", "bad" });

        // Embeddings: one unit-length vector of the model's width per input.
        using var embedded = await http.PostAsync("v1/embeddings", Json("""{"input":["Lily","Tom and Lily"]}"""));
        Assert.Equal(HttpStatusCode.OK, embedded.StatusCode);
        using var embeddings = JsonDocument.Parse(await embedded.Content.ReadAsStringAsync());
        var vectors = embeddings.RootElement.GetProperty("data").EnumerateArray()
            .Select(d => d.GetProperty("embedding").EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
        Assert.Equal(2, vectors.Length);
        foreach (double[] v in vectors)
        {
            Assert.Equal(64, v.Length);
            Assert.Equal(1.0, Math.Sqrt(v.Sum(x => x * x)), 1e-5);
        }
        Assert.NotEqual(vectors[0], vectors[1]);
        stop.Cancel();
        Assert.Equal(0, await serving.WaitAsync(TimeSpan.FromSeconds(30)));
        string lines = log.ToString();
        Assert.Contains("v1/completions 200 in=5 out=48", lines);
        Assert.Contains("shutting down", lines);
    }

    [SharedFact]
    public async Task LogprobsMatchLlamaCppAndConcurrentRequestsMatchLoneOnes()
    {
        using var stop = new CancellationTokenSource();
        var listening = new TaskCompletionSource<Uri>();
        var settings = new ServeSettings { ModelPath = StoriesReferences.ModelPath, Port = 0, Threads = 1 };
        Task<int> serving = ServeCommand.RunAsync(settings, TextWriter.Null, listening.SetResult, stop.Token);
        using var http = new HttpClient { BaseAddress = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30)) };
        for (int i = 0; i < 200 && (await http.GetAsync("health")).StatusCode != HttpStatusCode.OK; i++)
            await Task.Delay(50);

        async Task<JsonElement> Complete(int[] prompt, int maxTokens, int? logprobs = null)
        {
            string body = JsonSerializer.Serialize(new { prompt, max_tokens = maxTokens, temperature = 0, logprobs });
            using var response = await http.PostAsync("v1/completions", Json(body));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return document.RootElement.GetProperty("choices")[0].Clone();
        }

        // The chosen tokens' and the top-5 log-probabilities are llama.cpp's (softmax over all logits). Not to the
        // 1e-6 of LlamaContext: the batching engine sums every row in the batch order, even alone, so that a
        // sequence's tokens never depend on its neighbours (llama.cpp sums single rows in another order).
        const double tolerance = 5e-3;
        StoriesReferences.Case reference = StoriesReferences.Cases[0];
        JsonElement scored = await Complete(reference.PromptIds, reference.Positions.Length, logprobs: 5);
        JsonElement logprobs = scored.GetProperty("logprobs");
        double[] chosen = logprobs.GetProperty("token_logprobs").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        Assert.Equal(reference.Positions.Length, chosen.Length);
        for (int i = 0; i < chosen.Length; i++)
        {
            Assert.Equal(reference.Positions[i].LogProb, chosen[i], tolerance);
            double[] top = logprobs.GetProperty("top_logprobs")[i].EnumerateObject().Select(p => p.Value.GetDouble()).OrderDescending().ToArray();
            double[] expected = reference.Positions[i].Top.Select(t => t.LogProb).OrderDescending().Take(top.Length).ToArray();
            Assert.True(top.Length >= 4); // two alternatives may render as the same text
            Assert.Equal(expected, top, (a, b) => Math.Abs(a - b) < tolerance);
        }

        // 16 overlapping greedy requests (prompts and lengths mixed, so cached prefixes are reused and cut) give
        // exactly what each gives alone.
        var jobs = Enumerable.Range(0, 16).Select(i => (Prompt: StoriesReferences.Cases[i % 5].PromptIds, Length: 8 + i % 3 * 8)).ToArray();
        var alone = new List<string>();
        foreach (var job in jobs)
            alone.Add((await Complete(job.Prompt, job.Length)).GetProperty("text").GetString()!);
        string[] together = await Task.WhenAll(jobs.Select(async job => (await Complete(job.Prompt, job.Length)).GetProperty("text").GetString()!));
        Assert.Equal(alone, together);
        Assert.Equal(StoriesReferences.Cases[0].GeneratedText[..alone[0].Length], alone[0]);

        stop.Cancel();
        Assert.Equal(0, await serving.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public void BadFlagsAreUsageErrors()
    {
        var result = KilnRunner.Run("serve", "-m", "whatever.gguf", "--port", "70000");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--port", result.Stderr);
        var both = KilnRunner.Run("serve", "-m", "whatever.gguf", "--api-key", "a", "--api-key-file", "b");
        Assert.Equal(2, both.ExitCode);
    }

    [Fact]
    public void ALoadTestTraceOutsideAnExistingDirectoryIsRefusedBeforeAnyRequest()
    {
        // Port 9 (discard) on loopback has no server: had the run started, the warm-up would fail with exit code 1.
        string missing = Path.Combine(Path.GetTempPath(), $"kiln-no-such-dir-{Guid.NewGuid():N}", "trace.json");
        var result = KilnRunner.Run("loadtest", "--url", "http://127.0.0.1:9", "--trace", missing);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--trace", result.Stderr);
        Assert.DoesNotContain("warm-up", result.Stderr);
        var directory = KilnRunner.Run("loadtest", "--url", "http://127.0.0.1:9", "--trace", Path.GetTempPath());
        Assert.Equal(2, directory.ExitCode);
        Assert.Contains("--trace", directory.Stderr);
    }
}
