using System.Net;
using System.Text;
using System.Text.Json;

namespace Kiln.Server.Tests;

/// <summary>Each bad request gets its 4xx with an OpenAI error object naming the field, and the server keeps serving.</summary>
public class BadInputTests
{
    public static readonly TheoryData<string, int, string?> Cases = new()
    {
        { """{"messages":[{"role":"user","content":"x"}""", 400, null },
        { """[1,2]""", 400, null },
        { """{"messages":"hello"}""", 400, "messages" },
        { """{"messages":[]}""", 400, "messages" },
        { """{}""", 400, "messages" },
        { """{"messages":[{"role":"robot","content":"x"}]}""", 400, "messages[0].role" },
        { """{"messages":[{"role":"user","content":5}]}""", 400, "messages[0].content" },
        { """{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}""", 400, "max_tokens" },
        { """{"messages":[{"role":"user","content":"x"}],"max_tokens":1000000000}""", 400, "max_tokens" },
        { """{"messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}""", 400, "max_tokens" },
        { """{"messages":[{"role":"user","content":"x"}],"temperature":1e9}""", 400, "temperature" },
        { """{"messages":[{"role":"user","content":"x"}],"top_p":-1}""", 400, "top_p" },
        { """{"messages":[{"role":"user","content":"x"}],"n":0}""", 400, "n" },
        { """{"messages":[{"role":"user","content":"x"}],"stop":[1]}""", 400, "stop" },
        { """{"messages":[{"role":"user","content":"x"}],"stream":"yes"}""", 400, "stream" },
        { """{"messages":[{"role":"user","content":"x"}],"top_logprobs":3}""", 400, "top_logprobs" },
        { """{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}""", 400, "response_format.type" },
        { """{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}""", 404, "model" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BadChatRequestsAreRefusedAndTheServerKeepsServing(string body, int status, string? param)
    {
        await using var fixture = await ServerFixture.StartAsync();
        using var response = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(status, (int)response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        JsonElement e = error.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
        Assert.Equal(JsonValueKind.String, e.GetProperty("type").ValueKind);
        if (param is not null)
            Assert.Equal(param, e.GetProperty("param").GetString());
        await AssertStillServing(fixture);
    }

    [Fact]
    public async Task UnknownFieldsAreIgnored()
    {
        await using var fixture = await ServerFixture.StartAsync();
        using var response = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(
            """{"messages":[{"role":"user","content":"x"}],"max_tokens":2,"frobnicate":{"a":[1]},"user":"u1"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task ApiKeyIsRequiredExceptForHealth()
    {
        await using var fixture = await ServerFixture.StartAsync(apiKey: "sekrit");
        using var anonymous = new HttpClient { BaseAddress = fixture.Server.Url };
        using var missing = await anonymous.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
        Assert.Contains("invalid_api_key", await missing.Content.ReadAsStringAsync());
        using var wrong = new HttpRequestMessage(HttpMethod.Get, "v1/models") { Headers = { { "Authorization", "Bearer nope" } } };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.SendAsync(wrong)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("health")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await fixture.Http.GetAsync("v1/models")).StatusCode);
        var reply = await fixture.Chat().CompleteChatAsync([new OpenAI.Chat.UserChatMessage("hi")], new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.Equal(2, reply.Value.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task OversizeBodiesGet413()
    {
        await using var fixture = await ServerFixture.StartAsync(maxBody: 4096);
        string body = "{\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('x', 10_000) + "\"}]}";
        using var response = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        await AssertStillServing(fixture);
    }

    [Fact]
    public async Task FullQueueGets429WithRetryAfterAndLongPromptsGet400()
    {
        var engine = new ScriptedEngine { MaxRunning = 1, TokenDelay = TimeSpan.FromMilliseconds(50), ContextLength = 64 };
        await using var fixture = await ServerFixture.StartAsync(engine);
        Task<HttpResponseMessage> slow = fixture.Http.PostAsync("v1/chat/completions", new StringContent(
            """{"messages":[{"role":"user","content":"x"}],"max_tokens":10}""", Encoding.UTF8, "application/json"));
        for (int i = 0; i < 100 && engine.Running == 0; i++)
            await Task.Delay(10);
        using var refused = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(
            """{"messages":[{"role":"user","content":"x"}],"max_tokens":10,"stream":true}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        Assert.Equal(HttpStatusCode.OK, (await slow).StatusCode);

        string longPrompt = string.Join(' ', Enumerable.Repeat("hi", 200));
        using var tooLong = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(
            $$"""{"messages":[{"role":"user","content":"{{longPrompt}}"}],"max_tokens":1}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        Assert.Contains("context_length_exceeded", await tooLong.Content.ReadAsStringAsync());
    }

    private static async Task AssertStillServing(ServerFixture fixture)
    {
        using var ok = await fixture.Http.PostAsync("v1/chat/completions", new StringContent(
            """{"messages":[{"role":"user","content":"x"}],"max_tokens":3}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }
}
