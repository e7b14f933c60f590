using System.Net;
using System.Text;
using System.Text.Json;

namespace Kiln.Server.Tests;

public class EndpointTests
{
    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    [Fact]
    public async Task HealthIs503WhileLoadingThen200()
    {
        var gate = new TaskCompletionSource();
        await using var fixture = await ServerFixture.StartAsync(loadGate: gate.Task);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await fixture.Http.GetAsync("health")).StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await fixture.Http.GetAsync("v1/models")).StatusCode);
        gate.SetResult();
        await fixture.Server.Loaded;
        Assert.Equal(HttpStatusCode.OK, (await fixture.Http.GetAsync("health")).StatusCode);
    }

    [Fact]
    public async Task CompletionsAcceptStringsListsAndTokenIdsWithEchoAndLogprobs()
    {
        await using var fixture = await ServerFixture.StartAsync();
        ScriptedEngine e = fixture.Engine;
        e.Script = _ => [e.Id("\u2581cat"), e.Id("\u2581sat")];
        using var one = JsonDocument.Parse(await (await fixture.Http.PostAsync("v1/completions", Json("""{"prompt":"Hello","echo":true,"logprobs":2}"""))).Content.ReadAsStringAsync());
        JsonElement choice = one.RootElement.GetProperty("choices")[0];
        Assert.Equal("Hello cat sat", choice.GetProperty("text").GetString());
        Assert.Equal([" cat", " sat"], choice.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal([5, 9], choice.GetProperty("logprobs").GetProperty("text_offset").EnumerateArray().Select(t => t.GetInt32()));

        int hello = e.Id("\u2581Hello");
        using var many = JsonDocument.Parse(await (await fixture.Http.PostAsync("v1/completions", Json($$"""{"prompt":[[1,{{hello}}],[{{hello}}]],"n":2}"""))).Content.ReadAsStringAsync());
        Assert.Equal(4, many.RootElement.GetProperty("choices").GetArrayLength());
        Assert.Equal(3, many.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        string sse = await (await fixture.Http.PostAsync("v1/completions", Json("""{"prompt":["a","b"],"stream":true,"stream_options":{"include_usage":true}}"""))).Content.ReadAsStringAsync();
        Assert.EndsWith("data: [DONE]\n\n", sse);
        Assert.Contains("\"completion_tokens\":4", sse);

        Assert.Equal(HttpStatusCode.BadRequest, (await fixture.Http.PostAsync("v1/completions", Json("""{"prompt":[99999]}"""))).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await fixture.Http.PostAsync("v1/completions", Json("""{"prompt":"x","logprobs":9}"""))).StatusCode);
    }

    [Fact]
    public async Task ModelsEmbeddingsTokenizeDetokenizeAndMetrics()
    {
        await using var fixture = await ServerFixture.StartAsync();
        using var models = JsonDocument.Parse(await fixture.Http.GetStringAsync("v1/models"));
        Assert.Equal("scripted", models.RootElement.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await fixture.Http.GetAsync("v1/models/other")).StatusCode);

        using var embeddings = JsonDocument.Parse(await (await fixture.Http.PostAsync("v1/embeddings", Json("""{"input":["the cat","sat"],"model":"scripted"}"""))).Content.ReadAsStringAsync());
        var vectors = embeddings.RootElement.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("embedding").EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToList();
        Assert.Equal(2, vectors.Count);
        Assert.All(vectors, v => Assert.Equal(1.0, Math.Sqrt(v.Sum(x => x * x)), 5));

        using var tokens = JsonDocument.Parse(await (await fixture.Http.PostAsync("tokenize", Json("""{"content":"Hello world"}"""))).Content.ReadAsStringAsync());
        int[] ids = tokens.RootElement.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.NotEmpty(ids);
        Assert.DoesNotContain(fixture.Engine.Tokenizer.BosId, ids); // add_special defaults to false
        using var text = JsonDocument.Parse(await (await fixture.Http.PostAsync("detokenize", Json($$"""{"tokens":[{{string.Join(',', ids)}}]}"""))).Content.ReadAsStringAsync());
        Assert.Equal("Hello world", text.RootElement.GetProperty("content").GetString());

        await fixture.Http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"x"}],"max_tokens":3}"""));
        string metrics = await fixture.Http.GetStringAsync("metrics");
        Assert.Contains("kiln_generation_tokens_total 3", metrics);
        Assert.Contains("kiln_http_requests_total{path=\"/v1/chat/completions\",status=\"200\"} 1", metrics);
        Assert.Contains("kiln_inter_token_latency_seconds_count 2", metrics);
        Assert.Equal(HttpStatusCode.NotFound, (await fixture.Http.GetAsync("v2/nothing")).StatusCode);
    }

    [Fact]
    public async Task ShutdownLetsRunningRequestsFinish()
    {
        var engine = new ScriptedEngine { TokenDelay = TimeSpan.FromMilliseconds(20) };
        await using var fixture = await ServerFixture.StartAsync(engine);
        Task<HttpResponseMessage> running = fixture.Http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"x"}],"max_tokens":20}"""));
        for (int i = 0; i < 100 && engine.Running == 0; i++)
            await Task.Delay(10);
        await fixture.Server.StopAsync();
        using var response = await running;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(20, body.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ShutdownCancelsWhatOutlivesTheGracePeriod()
    {
        var engine = new ScriptedEngine { TokenDelay = TimeSpan.FromMilliseconds(50) };
        await using var fixture = await ServerFixture.StartAsync(engine, shutdownTimeout: TimeSpan.FromMilliseconds(300));
        Task<HttpResponseMessage> running = fixture.Http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"x"}],"max_tokens":200,"stream":true}"""));
        for (int i = 0; i < 100 && engine.Running == 0; i++)
            await Task.Delay(10);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await fixture.Server.StopAsync();
        for (int i = 0; i < 100 && engine.Running > 0; i++)
            await Task.Delay(20);
        Assert.Equal(0, engine.Running);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        try
        {
            using var response = await running;
            string text = await response.Content.ReadAsStringAsync();
            Assert.DoesNotContain("[DONE]", text); // 200 tokens at 50 ms could not have finished
        }
        catch (HttpRequestException)
        {
            // The connection was cut: also a cancelled request.
        }
    }
}
