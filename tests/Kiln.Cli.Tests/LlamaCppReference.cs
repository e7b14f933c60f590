using System.Diagnostics;
using System.Text.Json;

namespace Kiln.Cli.Tests;

/// <summary>
/// llama.cpp itself as the reference: runs tools/llamacpp-reference/greedy.mjs (node-llama-cpp's prebuilt CPU build of
/// llama.cpp, installed by scripts/install-llamacpp-reference.sh) and reads its greedy tokens.
/// </summary>
internal static class LlamaCppReference
{
    public sealed record Result(int[] Prompt, int[] Tokens, string Text);

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static readonly Lazy<string?> Root = new(FindRepositoryRoot);
    private static readonly Lazy<string?> Node = new(FindNode);

    /// <summary>Why the reference cannot run here, or null when it can.</summary>
    public static string? Unavailable
    {
        get
        {
            if (Root.Value is null)
                return "the llama.cpp reference needs the source checkout (the folder holding Kiln.slnx), which was not found";
            if (Node.Value is null)
                return "the llama.cpp reference needs Node.js (node on PATH), which is absent";
            if (!File.Exists(Path.Combine(Root.Value, "tools", "llamacpp-reference", "node_modules", "node-llama-cpp", "package.json")))
                return "the llama.cpp reference is not installed (bash scripts/install-llamacpp-reference.sh)";
            return null;
        }
    }

    /// <summary>llama.cpp's <paramref name="count"/> greedy tokens after <paramref name="prompt"/>, with the LoRA adapters applied.</summary>
    public static Result Greedy(string model, int[] prompt, int count, params string[] adapters)
    {
        if (Unavailable is { } reason)
            throw new InvalidOperationException(reason);
        var start = new ProcessStartInfo(Node.Value!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Root.Value!,
        };
        foreach (string arg in (string[])[Path.Combine("tools", "llamacpp-reference", "greedy.mjs"), Path.GetFullPath(model),
                     string.Join(',', prompt), count.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     .. adapters.Select(Path.GetFullPath)])
            start.ArgumentList.Add(arg);

        using var process = Process.Start(start) ?? throw new InvalidOperationException("node did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"llama.cpp (greedy.mjs) did not finish within {Timeout.TotalSeconds} s on {model}");
        }
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"llama.cpp (greedy.mjs) failed on {model} with exit code {process.ExitCode}: {stderr.Result.Trim()}");

        using var json = JsonDocument.Parse(stdout.Result);
        var root = json.RootElement;
        static int[] Ids(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
        return new Result(Ids(root.GetProperty("prompt")), Ids(root.GetProperty("tokens")), root.GetProperty("text").GetString()!);
    }

    private static string? FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Kiln.slnx")))
                return dir.FullName;
        }
        return null;
    }

    private static string? FindNode()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, OperatingSystem.IsWindows() ? "node.exe" : "node");
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }
}

/// <summary>A fact that needs the llama.cpp reference: skipped, with the reason, when node or the reference is absent.</summary>
public sealed class LlamaCppFactAttribute : FactAttribute
{
    public LlamaCppFactAttribute()
    {
        if (LlamaCppReference.Unavailable is { } reason)
            Skip = reason;
    }
}

/// <summary>A theory that needs the llama.cpp reference: skipped, with the reason, when node or the reference is absent.</summary>
public sealed class LlamaCppTheoryAttribute : TheoryAttribute
{
    public LlamaCppTheoryAttribute()
    {
        if (LlamaCppReference.Unavailable is { } reason)
            Skip = reason;
    }
}
