using System.CommandLine;
using Kiln.Server;
using Kiln.Serving;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln serve: an OpenAI-compatible HTTP server for a GGUF model (loopback unless --host says otherwise). Runs until
/// SIGTERM or Ctrl-C, then lets running requests finish for --shutdown-timeout seconds before cancelling them.
/// </summary>
internal static class ServeCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Option<string>("--model", "-m")
        {
            Description = "GGUF model file to serve; default: the built-in model Kiln trained on Tiny Shakespeare",
            DefaultValueFactory = _ => BuiltInModel.Path,
        };
        var alias = new Option<string?>("--alias") { Description = "Model name clients use (default: the file name without extension)" };
        var host = new Option<string>("--host") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on every endpoint but /health" };
        var apiKeyFile = new Option<string?>("--api-key-file") { Description = "Read the API key from this file (first line)" };
        var maxSeqs = new Option<int>("--max-seqs") { Description = "Sequences generated together at most", DefaultValueFactory = _ => 8 };
        var maxBatchTokens = new Option<int>("--max-batch-tokens") { Description = "Tokens per engine step (decode plus prefill chunks)", DefaultValueFactory = _ => 512 };
        var maxPrefillTokens = new Option<int>("--max-prefill-tokens")
        {
            Description = "Prompt tokens per step while other sequences decode (bounds their inter-token latency; 0 = only --max-batch-tokens)",
            DefaultValueFactory = _ => SchedulerOptions.DefaultMaxPrefillTokens,
        };
        var ctx = new Option<int>("--ctx") { Description = "Context length per sequence; default: the model's, at most 4096" };
        var kvCacheMb = new Option<int>("--kv-cache-mb") { Description = "KV cache pool size in MiB (default: enough for --max-seqs full contexts)" };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads; default: one per physical core" };
        var loadMode = new LoadModeFlags();
        var shutdown = new Option<int>("--shutdown-timeout") { Description = "Seconds running requests may take to finish after SIGTERM/Ctrl-C", DefaultValueFactory = _ => 30 };

        var command = new Command("serve", "Serve a GGUF model over an OpenAI-compatible HTTP API");
        foreach (Option o in new Option[] { model, alias, host, port, apiKey, apiKeyFile, maxSeqs, maxBatchTokens, maxPrefillTokens, ctx, kvCacheMb, threads, shutdown })
            command.Options.Add(o);
        loadMode.AddTo(command);

        command.SetAction(async (r, cancellation) =>
        {
            string? key = r.GetValue(apiKey);
            if (r.GetValue(apiKeyFile) is { } keyFile)
            {
                if (key is not null)
                    throw new CliException("give --api-key or --api-key-file, not both");
                key = File.ReadLines(keyFile).FirstOrDefault()?.Trim();
                if (string.IsNullOrEmpty(key))
                    throw new CliException($"--api-key-file {keyFile} holds no key");
            }
            var settings = new ServeSettings
            {
                ModelPath = r.GetValue(model)!,
                Alias = r.GetValue(alias),
                Host = r.GetValue(host)!,
                Port = Check(r.GetValue(port), 0, 65535, "--port"),
                ApiKey = key,
                MaxSequences = Check(r.GetValue(maxSeqs), 1, 1024, "--max-seqs"),
                MaxBatchTokens = Check(r.GetValue(maxBatchTokens), 1, 1 << 16, "--max-batch-tokens"),
                MaxPrefillTokens = Check(r.GetValue(maxPrefillTokens), 0, 1 << 16, "--max-prefill-tokens"),
                ContextLength = Check(r.GetValue(ctx), 0, 1 << 20, "--ctx"),
                KvCacheMb = Check(r.GetValue(kvCacheMb), 0, 1 << 20, "--kv-cache-mb"),
                Threads = Check(r.GetValue(threads), 0, 1024, "--threads"),
                LoadMode = loadMode.Resolve(r),
                ShutdownTimeout = TimeSpan.FromSeconds(Check(r.GetValue(shutdown), 0, 3600, "--shutdown-timeout")),
            };
            if (!File.Exists(settings.ModelPath))
                throw new FileNotFoundException($"model file not found: {settings.ModelPath}", settings.ModelPath);
            ServingEngineFactory.EnsureServable(settings.ModelPath);
            return await RunAsync(settings, io.Error, null, cancellation).ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>Serves until <paramref name="stop"/> fires or the process gets SIGTERM/Ctrl-C; <paramref name="listening"/> gets the address once bound.</summary>
    public static async Task<int> RunAsync(ServeSettings settings, TextWriter log, Action<Uri>? listening, CancellationToken stop)
    {
        await using var server = new KilnServer(new KilnServerOptions
        {
            Host = settings.Host,
            Port = settings.Port,
            ApiKey = settings.ApiKey,
            ShutdownTimeout = settings.ShutdownTimeout,
            Log = log,
        }, _ => Task.FromResult(ServingEngineFactory.Create(settings)));
        await server.StartAsync(stop).ConfigureAwait(false);
        log.WriteLine($"kiln: listening on {server.Url} (loading {settings.ModelPath})");
        log.Flush();
        listening?.Invoke(server.Url);
        try
        {
            await server.Loaded.WaitAsync(stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return 0;
        }
        catch (Exception e)
        {
            log.WriteLine($"kiln: error: could not load the model: {e.Message}");
            return 1;
        }
        log.WriteLine("kiln: model loaded; serving (Ctrl-C or SIGTERM to stop)");
        log.Flush();
        try
        {
            await server.WaitForShutdownAsync(stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Asked to stop by the caller rather than by a signal.
        }
        log.WriteLine("kiln: shutting down; letting running requests finish");
        log.Flush();
        await server.StopAsync().ConfigureAwait(false);
        return 0;
    }

    private static int Check(int value, int min, int max, string flag) =>
        value >= min && value <= max ? value : throw new CliException($"{flag} {value} is out of range ({min} to {max})");
}
