using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Kiln.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Kiln.Server;

/// <summary>
/// The OpenAI-compatible HTTP server on Kestrel. It listens at once and loads the model in the background
/// (<c>/health</c> answers 503 until it is ready). On shutdown (SIGTERM, Ctrl-C, <see cref="StopAsync"/>) it stops
/// accepting connections, lets running requests finish for <see cref="KilnServerOptions.ShutdownTimeout"/>, then
/// aborts them, which cancels their engine sequences.
/// </summary>
public sealed class KilnServer : IAsyncDisposable
{
    private readonly KilnServerOptions _options;
    private readonly Func<CancellationToken, Task<ServedModel>> _load;
    private readonly ServerMetrics _metrics = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly byte[]? _expectedAuthorization;
    private WebApplication? _app;
    private Task? _loading;
    private volatile ServedModel? _model;
    private volatile string? _loadError;

    public KilnServer(KilnServerOptions options, Func<CancellationToken, Task<ServedModel>> load)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(load);
        _options = options;
        _load = load;
        if (!string.IsNullOrEmpty(options.ApiKey))
            _expectedAuthorization = Encoding.UTF8.GetBytes("Bearer " + options.ApiKey);
    }

    /// <summary>The address the server listens on (valid after <see cref="StartAsync"/>).</summary>
    public Uri Url { get; private set; } = new("http://127.0.0.1/");

    public bool IsReady => _model is not null;

    /// <summary>Completes when the model is loaded (throws if loading failed).</summary>
    public Task Loaded => _loading ?? throw new InvalidOperationException("The server has not been started.");

    /// <summary>Triggered when the host begins shutting down (signal or <see cref="StopAsync"/>).</summary>
    public CancellationToken ShutdownRequested => _app?.Lifetime.ApplicationStopping ?? CancellationToken.None;

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = _options.ShutdownTimeout);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = _options.MaxRequestBodyBytes;
            kestrel.AddServerHeader = false;
            if (_options.Host is "localhost")
                kestrel.ListenLocalhost(_options.Port);
            else if (IPAddress.TryParse(_options.Host, out IPAddress? address))
                kestrel.Listen(address, _options.Port);
            else
                throw new ArgumentException($"--host '{_options.Host}' is not an IP address or 'localhost'.");
        });
        WebApplication app = builder.Build();
        app.Run(HandleAsync);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        _app = app;
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Url = new Uri(address.Replace("[::]", "localhost", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal));
        app.Lifetime.ApplicationStopping.Register(() => _stopping.CancelAfter(_options.ShutdownTimeout));
        _loading = LoadAsync();
    }

    /// <summary>Waits until a shutdown signal (SIGTERM, Ctrl-C) or <see cref="StopAsync"/> has stopped the host.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) =>
        (_app ?? throw new InvalidOperationException("The server has not been started.")).WaitForShutdownAsync(cancellationToken);

    public async Task StopAsync()
    {
        if (_app is { } app)
        {
            _stopping.CancelAfter(_options.ShutdownTimeout);
            using var deadline = new CancellationTokenSource(_options.ShutdownTimeout);
            await app.StopAsync(deadline.Token).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        if (_app is { } app)
            await app.DisposeAsync().ConfigureAwait(false);
        if (_loading is not null)
        {
            try
            {
                await _loading.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Reported through /health and Loaded already.
            }
        }
        if (_model is { } model)
        {
            await model.Engine.DisposeAsync().ConfigureAwait(false);
            model.Resources?.Dispose();
        }
        _stopping.Dispose();
    }

    private async Task LoadAsync()
    {
        try
        {
            _model = await Task.Run(() => _load(_stopping.Token)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _loadError = e.Message;
            throw;
        }
    }

    private async Task HandleAsync(HttpContext context)
    {
        var trace = new RequestTrace(_metrics);
        string path = context.Request.Path.Value ?? "/";
        string method = context.Request.Method;
        // Requests run until they finish or the client leaves; only once the shutdown grace period is over are they cancelled.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _stopping.Token);
        CancellationToken cancellationToken = linked.Token;
        string outcome = "";
        try
        {
            if (path == "/health" && method == "GET")
            {
                await HealthAsync(context, cancellationToken).ConfigureAwait(false);
                return;
            }
            CheckKey(context.Request);
            ServedModel model = _model ?? throw new ApiException(503, _loadError is null ? "The model is loading." : $"The model failed to load: {_loadError}", "server_error", code: "model_not_ready");
            switch (method, path)
            {
                case ("POST", "/v1/chat/completions"):
                    await ChatCompletionsEndpoint.HandleAsync(context, model, trace, cancellationToken).ConfigureAwait(false);
                    break;
                case ("POST", "/v1/completions"):
                    await CompletionsEndpoint.HandleAsync(context, model, trace, cancellationToken).ConfigureAwait(false);
                    break;
                case ("POST", "/v1/embeddings"):
                    await EmbeddingsEndpoint.HandleAsync(context, model, trace, cancellationToken).ConfigureAwait(false);
                    break;
                case ("GET", "/v1/models"):
                    await ModelsEndpoint.ListAsync(context, model, cancellationToken).ConfigureAwait(false);
                    break;
                case ("GET", _) when path.StartsWith("/v1/models/", StringComparison.Ordinal):
                    await ModelsEndpoint.GetAsync(context, model, path["/v1/models/".Length..], cancellationToken).ConfigureAwait(false);
                    break;
                case ("POST", "/tokenize"):
                    await TokenizerEndpoints.TokenizeAsync(context, model, cancellationToken).ConfigureAwait(false);
                    break;
                case ("POST", "/detokenize"):
                    await TokenizerEndpoints.DetokenizeAsync(context, model, cancellationToken).ConfigureAwait(false);
                    break;
                case ("GET", "/metrics"):
                    byte[] text = Encoding.UTF8.GetBytes(_metrics.Render(model.Engine.GetMetrics()));
                    context.Response.ContentType = "text/plain; version=0.0.4";
                    await context.Response.Body.WriteAsync(text, cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    throw new ApiException(404, $"No endpoint {method} {path}.", code: "unknown_url");
            }
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left (whatever the exception it caused): its sequence is cancelled, nobody to answer.
            outcome = " (client left)";
            if (!context.Response.HasStarted)
                context.Response.StatusCode = 499;
        }
        catch (Exception e)
        {
            ApiException error = Translate(e);
            if (!context.Response.HasStarted)
            {
                context.Response.Clear();
                await JsonResponses.WriteErrorAsync(context.Response, error, CancellationToken.None).ConfigureAwait(false);
            }
            else if (context.Response.ContentType == "text/event-stream")
            {
                // Headers are out: the error goes into the stream as one more event.
                try
                {
                    await JsonResponses.WriteEventAsync(context.Response, JsonResponses.Build(w => JsonResponses.Error(w, error.Message, error.Type, error.Param, error.Code)), CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // The client is gone.
                }
            }
            outcome = error.Status >= 500 ? $" ({e.GetType().Name}: {e.Message})" : $" ({error.Message})";
        }
        finally
        {
            int status = context.Response.StatusCode;
            _metrics.CountRequest(MetricPath(path), status);
            _metrics.RequestDuration.Observe(trace.Elapsed);
            if (_options.Log is { } log && path != "/health" && path != "/metrics")
            {
                string ttft = trace.TimeToFirstToken is { } t ? (t * 1000).ToString("F0", CultureInfo.InvariantCulture) + "ms" : "-";
                string line = string.Create(CultureInfo.InvariantCulture,
                    $"kiln: {trace.Id} {method} {path} {status} in={trace.PromptTokens} out={trace.CompletionTokens} ttft={ttft} total={trace.Elapsed * 1000:F0}ms{outcome}");
                lock (log)
                {
                    log.WriteLine(line);
                    log.Flush();
                }
            }
        }
    }

    /// <summary>The path label of the request counter: known endpoints only, so clients cannot grow the label set.</summary>
    private static string MetricPath(string path) => path switch
    {
        "/v1/chat/completions" or "/v1/completions" or "/v1/embeddings" or "/v1/models" or "/tokenize" or "/detokenize" or "/health" or "/metrics" => path,
        _ when path.StartsWith("/v1/models/", StringComparison.Ordinal) => "/v1/models/{id}",
        _ => "other",
    };

    private async Task HealthAsync(HttpContext context, CancellationToken cancellationToken)
    {
        bool ready = _model is not null;
        await JsonResponses.WriteAsync(context.Response, ready ? 200 : 503, w =>
        {
            w.WriteStartObject();
            w.WriteString("status", ready ? "ok" : _loadError is null ? "loading model" : "error");
            if (_loadError is not null)
                w.WriteString("error", _loadError);
            w.WriteEndObject();
        }, cancellationToken).ConfigureAwait(false);
    }

    private void CheckKey(HttpRequest request)
    {
        if (_expectedAuthorization is null)
            return;
        byte[] given = Encoding.UTF8.GetBytes(request.Headers.Authorization.ToString());
        if (!CryptographicOperations.FixedTimeEquals(given, _expectedAuthorization))
            throw new ApiException(401, "Missing or incorrect API key (send 'Authorization: Bearer KEY').", code: "invalid_api_key");
    }

    private ApiException Translate(Exception e) => e switch
    {
        ApiException api => api,
        EngineRejectedException { Reason: EngineRejection.QueueFull } r => new ApiException(429, r.Message, "rate_limit_error", code: "queue_full") { RetryAfterSeconds = _options.RetryAfterSeconds },
        EngineRejectedException { Reason: EngineRejection.PromptTooLong } r => new ApiException(400, r.Message, code: "context_length_exceeded"),
        EngineRejectedException r => new ApiException(503, r.Message, "server_error", code: "shutting_down"),
        BadHttpRequestException { StatusCode: 413 } => new ApiException(413, $"The request body is larger than {_options.MaxRequestBodyBytes} bytes.", code: "request_too_large"),
        BadHttpRequestException bad => new ApiException(bad.StatusCode, bad.Message),
        NotSupportedException unsupported => new ApiException(501, unsupported.Message, "server_error", code: "not_implemented"),
        OperationCanceledException => new ApiException(503, "The server is shutting down.", "server_error", code: "shutting_down"),
        _ => new ApiException(500, "Internal server error.", "server_error"),
    };
}
