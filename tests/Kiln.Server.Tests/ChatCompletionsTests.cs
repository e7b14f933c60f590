using System.Text;
using System.Text.Json;
using Kiln.Serving.Constraints;
using OpenAI.Chat;

namespace Kiln.Server.Tests;

/// <summary>The chat endpoint driven by the official OpenAI .NET client.</summary>
public class ChatCompletionsTests
{
    [Fact]
    public async Task ChatReturnsTheEngineTokensAsTextWithUsage()
    {
        await using var fixture = await ServerFixture.StartAsync();
        fixture.Engine.Script = _ => [fixture.Engine.Id("\u2581Hello"), fixture.Engine.Id("\u2581world"), fixture.Engine.Id(".")];
        ChatCompletion completion = await fixture.Chat().CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 10 });
        Assert.Equal(" Hello world.", completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(3, completion.Usage.OutputTokenCount);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.Contains("in=", fixture.Log.ToString());
    }

    [Fact]
    public async Task MaxTokensEndsWithLength()
    {
        await using var fixture = await ServerFixture.StartAsync();
        ChatCompletion completion = await fixture.Chat().CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 4 });
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(4, completion.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task StreamingDeliversTheSameTextAndAFinalUsage()
    {
        await using var fixture = await ServerFixture.StartAsync();
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0.7f, Seed = 5 };
        ChatCompletion whole = await fixture.Chat().CompleteChatAsync([new UserChatMessage("hi")], options);
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (StreamingChatCompletionUpdate update in fixture.Chat().CompleteChatStreamingAsync([new UserChatMessage("hi")], options))
        {
            foreach (var part in update.ContentUpdate)
                text.Append(part.Text);
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.NotNull(usage);
        Assert.Equal(12, usage.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, finish);
    }

    [Fact]
    public async Task StopStringsAreExcludedEvenWhenSplitAcrossTokens()
    {
        await using var fixture = await ServerFixture.StartAsync();
        ScriptedEngine e = fixture.Engine;
        // "STOP" arrives as part of "▁STOP"; the stop string " ST" + "OP" spans two tokens' text.
        e.Script = _ => [e.Id("\u2581Hello"), e.Id("\u2581world"), e.Id("\u2581STOP"), e.Id("\u2581cat")];
        var options = new ChatCompletionOptions { StopSequences = { "d STOP" } };
        ChatCompletion completion = await fixture.Chat().CompleteChatAsync([new UserChatMessage("hi")], options);
        Assert.Equal(" Hello worl", completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);

        var streamed = new StringBuilder();
        await foreach (var update in fixture.Chat().CompleteChatStreamingAsync([new UserChatMessage("hi")], options))
            foreach (var part in update.ContentUpdate)
                streamed.Append(part.Text);
        Assert.Equal(" Hello worl", streamed.ToString());
    }

    [Fact]
    public async Task SameSeedSameTextOtherSeedOtherText()
    {
        await using var fixture = await ServerFixture.StartAsync();
        async Task<string> Run(long seed) => (await fixture.Chat().CompleteChatAsync([new UserChatMessage("hi")],
            new ChatCompletionOptions { Temperature = 1, Seed = seed, MaxOutputTokenCount = 16 })).Value.Content[0].Text;
        Assert.Equal(await Run(42), await Run(42));
        Assert.NotEqual(await Run(42), await Run(43));
    }

    [Fact]
    public async Task LogprobsCoverEveryToken()
    {
        await using var fixture = await ServerFixture.StartAsync();
        ChatCompletion completion = await fixture.Chat().CompleteChatAsync([new UserChatMessage("hi")],
            new ChatCompletionOptions { MaxOutputTokenCount = 5, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 });
        Assert.Equal(5, completion.ContentTokenLogProbabilities.Count);
        Assert.All(completion.ContentTokenLogProbabilities, t =>
        {
            Assert.Equal(-0.25f, t.LogProbability);
            Assert.Equal(3, t.TopLogProbabilities.Count);
        });
        Assert.Equal(completion.Content[0].Text, string.Concat(completion.ContentTokenLogProbabilities.Select(t => t.Token)));
    }

    [Fact]
    public async Task JsonSchemaOutputParsesAndValidates()
    {
        await using var fixture = await ServerFixture.StartAsync();
        const string schema = """{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}""";
        for (int seed = 0; seed < 5; seed++)
        {
            ChatCompletion completion = await fixture.Chat().CompleteChatAsync([new UserChatMessage("a person")], new ChatCompletionOptions
            {
                Seed = seed,
                MaxOutputTokenCount = 200,
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("person", BinaryData.FromString(schema), jsonSchemaIsStrict: true),
            });
            using var document = JsonDocument.Parse(completion.Content[0].Text);
            Assert.Equal(JsonValueKind.String, document.RootElement.GetProperty("name").ValueKind);
            Assert.True(document.RootElement.GetProperty("age").TryGetInt64(out _));
            Assert.Equal(2, document.RootElement.EnumerateObject().Count());
        }
        ChatCompletion anyObject = await fixture.Chat().CompleteChatAsync([new UserChatMessage("json")],
            new ChatCompletionOptions { MaxOutputTokenCount = 200, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() });
        using var parsed = JsonDocument.Parse(anyObject.Content[0].Text);
        Assert.Equal(JsonValueKind.Object, parsed.RootElement.ValueKind);
    }

    [Fact]
    public async Task UnsupportedSchemaFeaturesAreRejectedByName()
    {
        await using var fixture = await ServerFixture.StartAsync();
        const string body = """
            {"model":"scripted","messages":[{"role":"user","content":"x"}],
             "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"^a+$"}}}}
            """;
        using var response = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(400, (int)response.StatusCode);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Contains("pattern", text);
        Assert.Contains("unsupported_schema", text);
    }

    [Fact]
    public async Task ThreeChoicesEachWithItsOwnText()
    {
        await using var fixture = await ServerFixture.StartAsync();
        const string body = """{"model":"scripted","messages":[{"role":"user","content":"x"}],"n":3,"seed":1,"max_tokens":8}""";
        using var response = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        response.EnsureSuccessStatusCode();
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var choices = document.RootElement.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal(3, choices.Select(c => c.GetProperty("message").GetProperty("content").GetString()).Distinct().Count());
        Assert.Equal(24, document.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // Streaming n = 3: every choice gets its content and its finish reason.
        const string streamBody = """{"messages":[{"role":"user","content":"x"}],"n":3,"seed":1,"max_tokens":8,"stream":true}""";
        using var streamed = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(streamBody, Encoding.UTF8, "application/json"));
        string sse = await streamed.Content.ReadAsStringAsync();
        var texts = new StringBuilder[3].Select(_ => new StringBuilder()).ToArray();
        int finishes = 0;
        foreach (string line in sse.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
        {
            using var chunk = JsonDocument.Parse(line[6..]);
            foreach (JsonElement choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("delta").TryGetProperty("content", out JsonElement content))
                    texts[choice.GetProperty("index").GetInt32()].Append(content.GetString());
                if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String)
                    finishes++;
            }
        }
        Assert.EndsWith("data: [DONE]\n\n", sse);
        Assert.Equal(3, finishes);
        Assert.Equal(choices.Select(c => c.GetProperty("message").GetProperty("content").GetString()), texts.Select(t => t.ToString()));
    }

    [Fact]
    public async Task DisconnectedStreamsGiveBackTheirBlocksAndTheOthersFinish()
    {
        var engine = new ScriptedEngine { TokenDelay = TimeSpan.FromMilliseconds(5) };
        await using var fixture = await ServerFixture.StartAsync(engine);
        var streams = Enumerable.Range(0, 32).Select(async i =>
        {
            using var cancel = new CancellationTokenSource();
            var options = new ChatCompletionOptions { MaxOutputTokenCount = 40, Seed = i, Temperature = 1 };
            int updates = 0;
            try
            {
                await foreach (var update in fixture.Chat().CompleteChatStreamingAsync([new UserChatMessage("hi")], options, cancel.Token))
                {
                    if (i % 4 == 0 && ++updates == 5)
                        cancel.Cancel();
                    if (update.Usage is not null)
                        return update.Usage.OutputTokenCount;
                }
                return -1;
            }
            catch (OperationCanceledException)
            {
                return 0;
            }
        }).ToArray();
        int[] results = await Task.WhenAll(streams);
        Assert.Equal(8, results.Count(r => r == 0));
        Assert.All(results.Where((_, i) => i % 4 != 0), r => Assert.Equal(40, r));
        // Aborted sequences end at the engine's next step: the double holds two blocks per running sequence.
        for (int wait = 0; wait < 100 && fixture.Engine.Running > 0; wait++)
            await Task.Delay(20);
        string metrics = await fixture.Http.GetStringAsync("metrics");
        Assert.Contains("kiln_kv_blocks_used 0\n", metrics);
        Assert.Contains("kiln_time_to_first_token_seconds_count", metrics);
    }
}
