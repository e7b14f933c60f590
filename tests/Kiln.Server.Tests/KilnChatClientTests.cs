using System.Text.Json;
using Kiln.Inference.Chat;
using Kiln.Serving;
using Kiln.Serving.Constraints;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Kiln.Server.Tests;

public class KilnChatClientTests
{
    private static (KilnChatClient Client, ScriptedEngine Engine) Create(ScriptedEngine? engine = null)
    {
        engine ??= new ScriptedEngine();
        return (new KilnChatClient(engine, ChatTemplate.For(ChatTemplateKind.ChatML)), engine);
    }

    private static readonly AiChatMessage[] Hi = [new(ChatRole.System, "be brief"), new(ChatRole.User, "hi")];

    [Fact]
    public async Task OptionsReachTheEngineRequest()
    {
        var (client, engine) = Create();
        EngineRequest? seen = null;
        engine.Script = r =>
        {
            seen = r;
            return [engine.Id("\u2581Hello"), engine.Id("\u2581world")];
        };
        ChatResponse response = await client.GetResponseAsync(Hi, new ChatOptions { Temperature = 0.5f, TopP = 0.9f, TopK = 7, Seed = 11, MaxOutputTokens = 9, PresencePenalty = 0.5f });
        Assert.Equal(" Hello world", response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(2, response.Usage!.OutputTokenCount);
        Assert.NotNull(seen);
        Assert.Equal(0.5f, seen.Sampling.Temperature);
        Assert.Equal(0.9f, seen.Sampling.TopP);
        Assert.Equal(7, seen.Sampling.TopK);
        Assert.Equal(11UL, seen.Sampling.Seed);
        Assert.Equal(0.5f, seen.Sampling.PresencePenalty);
        Assert.Equal(9, seen.MaxTokens);
        // The ChatML template renders both turns and the assistant cue.
        string prompt = engine.Tokenizer.Decode(seen.Prompt.ToArray());
        Assert.Contains("<|im_start|>system\nbe brief<|im_end|>", prompt);
        Assert.EndsWith("<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public async Task MaxTokensStopSequencesAndSeeds()
    {
        var (client, engine) = Create();
        ChatResponse limited = await client.GetResponseAsync(Hi, new ChatOptions { MaxOutputTokens = 3, Seed = 1 });
        Assert.Equal(ChatFinishReason.Length, limited.FinishReason);
        Assert.Equal(3, limited.Usage!.OutputTokenCount);
        Assert.Equal(limited.Text, (await client.GetResponseAsync(Hi, new ChatOptions { MaxOutputTokens = 3, Seed = 1 })).Text);
        Assert.NotEqual((await client.GetResponseAsync(Hi, new ChatOptions { MaxOutputTokens = 12, Seed = 1 })).Text,
            (await client.GetResponseAsync(Hi, new ChatOptions { MaxOutputTokens = 12, Seed = 2 })).Text);

        engine.Script = _ => [engine.Id("\u2581the"), engine.Id("\u2581cat"), engine.Id("\u2581sat")];
        ChatResponse stopped = await client.GetResponseAsync(Hi, new ChatOptions { StopSequences = ["t s"] });
        Assert.Equal(" the ca", stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task CharactersSplitAcrossByteTokensArriveWholeAndStopsMatchAcrossThem()
    {
        var (client, engine) = Create();
        int Byte(int b) => 3 + b; // <0xNN> sits at 3 + NN in the scripted vocabulary
        // "a€b€c" with € = E2 82 AC, one byte per token.
        engine.Script = _ => [engine.Id("\u2581cat"), Byte(0xE2), Byte(0x82), Byte(0xAC), Byte('b'), Byte(0xE2), Byte(0x82), Byte(0xAC), Byte('c')];
        var updates = new List<string>();
        await foreach (var update in client.GetStreamingResponseAsync(Hi))
            updates.Add(update.Text);
        Assert.Equal(" cat€b€c", string.Concat(updates));
        Assert.DoesNotContain(updates, u => u.Contains('\uFFFD'));

        ChatResponse stopped = await client.GetResponseAsync(Hi, new ChatOptions { StopSequences = ["€c"] });
        Assert.Equal(" cat€b", stopped.Text);
        Assert.Equal(9, stopped.Usage!.OutputTokenCount); // every token up to the one completing the stop string
    }

    [Fact]
    public async Task StreamingMatchesTheWholeResponseAndEndsWithUsage()
    {
        var (client, _) = Create();
        var options = new ChatOptions { MaxOutputTokens = 10, Seed = 4 };
        ChatResponse whole = await client.GetResponseAsync(Hi, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Hi, options))
            updates.Add(update);
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(10, updates[^1].Contents.OfType<UsageContent>().Single().Details.OutputTokenCount);
    }

    [Fact]
    public async Task JsonResponseFormatIsEnforcedAndUnsupportedSchemasRefused()
    {
        var (client, _) = Create();
        using var schema = JsonDocument.Parse("""{"type":"object","properties":{"name":{"type":"string"},"ok":{"type":"boolean"}},"required":["name","ok"]}""");
        ChatResponse response = await client.GetResponseAsync(Hi, new ChatOptions { MaxOutputTokens = 200, ResponseFormat = ChatResponseFormat.ForJsonSchema(schema.RootElement) });
        using var parsed = JsonDocument.Parse(response.Text);
        Assert.Equal(JsonValueKind.String, parsed.RootElement.GetProperty("name").ValueKind);
        Assert.True(parsed.RootElement.GetProperty("ok").ValueKind is JsonValueKind.True or JsonValueKind.False);

        using var unsupported = JsonDocument.Parse("""{"type":"string","format":"date"}""");
        await Assert.ThrowsAsync<UnsupportedJsonSchemaException>(() => client.GetResponseAsync(Hi, new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(unsupported.RootElement) }));
    }

    [Fact]
    public async Task CancellationAbortsTheSequence()
    {
        var (client, engine) = Create(new ScriptedEngine { TokenDelay = TimeSpan.FromMilliseconds(10) });
        using var cancel = new CancellationTokenSource();
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(Hi, new ChatOptions { MaxOutputTokens = 200 }, cancel.Token))
            {
                if (++seen == 3)
                    cancel.Cancel();
            }
        });
        Assert.Equal(0, engine.Running);
    }

    [Fact]
    public async Task ConcurrentCallsGiveWhatEachGivesAlone()
    {
        var (client, _) = Create();
        var alone = new List<string>();
        for (int i = 0; i < 16; i++)
            alone.Add((await client.GetResponseAsync(Hi, new ChatOptions { Seed = i, MaxOutputTokens = 8 })).Text);
        string[] together = await Task.WhenAll(Enumerable.Range(0, 16).Select(async i => (await client.GetResponseAsync(Hi, new ChatOptions { Seed = i, MaxOutputTokens = 8 })).Text));
        Assert.Equal(alone, together);
    }

    [Fact]
    public async Task EmbeddingGeneratorReturnsNormalizedVectors()
    {
        var engine = new ScriptedEngine();
        var generator = new KilnEmbeddingGenerator(engine);
        GeneratedEmbeddings<Embedding<float>> embeddings = await generator.GenerateAsync(["the cat", "sat on the mat"]);
        Assert.Equal(2, embeddings.Count);
        Assert.All(embeddings, e =>
        {
            Assert.Equal(engine.EmbeddingLength, e.Dimensions);
            Assert.Equal(1.0, Math.Sqrt(e.Vector.ToArray().Sum(x => (double)x * x)), 5);
        });
        Assert.Equal(engine.EmbeddingLength, generator.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelDimensions);
    }
}
