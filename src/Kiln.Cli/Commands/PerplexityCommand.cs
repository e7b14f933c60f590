using System.CommandLine;
using System.Globalization;
using System.Text;
using Kiln.Evaluation;
using Kiln.Models.Llama;
using Kiln.Tokenizers;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln perplexity: llama-perplexity's measurement (see <see cref="PerplexityEvaluator"/>), printed as
/// llama.cpp prints it: "[i]running-ppl," per chunk, then "Final estimate: PPL = x +/- e" on stdout.
/// </summary>
internal static class PerplexityCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Option<string>("--model", "-m") { Description = "Path of a GGUF model file", Required = true };
        var file = new Option<string>("--file", "-f") { Description = "UTF-8 text file to measure", Required = true };
        var context = new Option<int>("--ctx-size", "-c")
        {
            Description = $"Tokens per chunk (even); default {PerplexityOptions.DefaultContextLength} as llama.cpp, or the model's context length if smaller",
        };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads; default: one per physical core" };
        var chunks = new Option<int>("--chunks") { Description = "Evaluate at most this many chunks; -1 = all", DefaultValueFactory = _ => -1 };

        var command = new Command("perplexity", "Measure a model's perplexity on a text file, as llama.cpp's llama-perplexity does");
        foreach (Option o in new Option[] { model, file, context, threads, chunks })
            command.Options.Add(o);

        command.SetAction((r, cancellation) =>
        {
            int n = r.GetValue(context);
            int t = r.GetValue(threads);
            int maxChunks = r.GetValue(chunks);
            if (n < 0)
                throw new CliException($"--ctx-size {n} must not be negative");
            if (t < 0 || t > 1024)
                throw new CliException($"--threads {t} is out of range (1 to 1024, or 0 for the default)");
            if (maxChunks == 0 || maxChunks < -1)
                throw new CliException($"--chunks {maxChunks} must be at least 1, or -1 for all");

            string textPath = r.GetValue(file)!;
            string text = ReadText(textPath);
            string modelPath = r.GetValue(model)!;
            if (!File.Exists(modelPath))
                throw new FileNotFoundException($"model file not found: {modelPath}", modelPath);

            using var llama = LlamaModel.Load(modelPath);
            var tokenizer = Tokenizer.FromGguf(llama.File);
            if (n == 0)
                n = Math.Min(PerplexityOptions.DefaultContextLength, llama.Config.ContextLength);
            using var evaluator = Create(llama, tokenizer, new PerplexityOptions
            {
                ContextLength = n,
                Threads = t,
                MaxChunks = Math.Max(maxChunks, 0),
            });

            int[] tokens = evaluator.Tokenize(text);
            int total = evaluator.ChunkCount(tokens.Length);
            if (total == 0)
                throw new CliException(
                    $"{textPath} is {tokens.Length} tokens long, but a context of {n} needs at least {n} tokens (one chunk); give a longer text or a smaller --ctx-size");
            io.Error.WriteLine($"kiln: {tokens.Length} tokens; calculating perplexity over {total} chunks, n_ctx={n}, {evaluator.ThreadCount} threads");

            var result = evaluator.Evaluate(tokens, chunk =>
            {
                io.Out.Write(string.Create(CultureInfo.InvariantCulture, $"[{chunk.Number}]{chunk.RunningPerplexity:F4},"));
                io.Out.Flush();
            }, cancellation);
            io.Out.WriteLine();
            io.Out.WriteLine(double.IsNaN(result.Uncertainty)
                ? string.Create(CultureInfo.InvariantCulture, $"Final estimate: PPL = {result.Perplexity:F4}")
                : string.Create(CultureInfo.InvariantCulture, $"Final estimate: PPL = {result.Perplexity:F4} +/- {result.Uncertainty:F5}"));
            io.Out.Flush();
            io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kiln: {result.Chunks} chunks ({result.ScoredTokens} tokens scored) in {result.Elapsed.TotalSeconds:F2} s ({result.TokensPerSecond:F1} t/s)"));
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>The evaluator, with bad option values (odd or oversized context …) reported as usage errors.</summary>
    private static PerplexityEvaluator Create(LlamaModel model, Tokenizer tokenizer, PerplexityOptions options)
    {
        try
        {
            return new PerplexityEvaluator(model, tokenizer, options);
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message);
        }
    }

    /// <summary>
    /// Reads the text strictly: a lenient decoder would silently replace invalid bytes and measure a
    /// different text than the file holds.
    /// </summary>
    private static string ReadText(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"text file not found: {path}", path);
        byte[] bytes = File.ReadAllBytes(path);
        try
        {
            return new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{path} is not UTF-8 text (invalid bytes at offset {e.Index})");
        }
    }
}
