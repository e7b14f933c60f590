using System.ClientModel;
using System.Net.Http.Headers;
using Kiln.Inference.Chat;
using OpenAI;
using OpenAI.Chat;

namespace Kiln.Server.Tests;

/// <summary>A real Kiln server on a free loopback port over a <see cref="ScriptedEngine"/>.</summary>
internal sealed class ServerFixture : IAsyncDisposable
{
    private ServerFixture(KilnServer server, ScriptedEngine engine, StringWriter log, string? apiKey)
    {
        Server = server;
        Engine = engine;
        Log = log;
        Http = new HttpClient { BaseAddress = server.Url };
        if (apiKey is not null)
            Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        ApiKey = apiKey ?? "unused";
    }

    public KilnServer Server { get; }
    public ScriptedEngine Engine { get; }
    public StringWriter Log { get; }
    public HttpClient Http { get; }
    public string ApiKey { get; }

    public static async Task<ServerFixture> StartAsync(ScriptedEngine? engine = null, string? apiKey = null, long maxBody = 1 << 20, Task? loadGate = null, TimeSpan? shutdownTimeout = null)
    {
        engine ??= new ScriptedEngine();
        var log = new StringWriter();
        var server = new KilnServer(
            new KilnServerOptions { Port = 0, ApiKey = apiKey, MaxRequestBodyBytes = maxBody, Log = TextWriter.Synchronized(log), ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(5) },
            async _ =>
            {
                if (loadGate is not null)
                    await loadGate;
                return new ServedModel(engine, ChatTemplate.For(ChatTemplateKind.Plain));
            });
        await server.StartAsync();
        if (loadGate is null)
            await server.Loaded;
        return new ServerFixture(server, engine, log, apiKey);
    }

    public ChatClient Chat() => new("scripted", new ApiKeyCredential(ApiKey), new OpenAIClientOptions { Endpoint = new Uri(Server.Url, "v1") });

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}
