using System.CommandLine;
using System.Globalization;
using System.Text;
using Kiln.Evaluation;
using Kiln.Formats.Gguf;
using Kiln.Models.Gpt2;
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
        var file = new Option<string?>("--file", "-f") { Description = "UTF-8 text file to measure (not needed with --kl-divergence: the base file holds the tokens)" };
        var context = new Option<int>("--ctx-size", "-c")
        {
            Description = $"Tokens per chunk (even); default {PerplexityOptions.DefaultContextLength} as llama.cpp, or the model's context length if smaller",
        };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads; default: one per physical core" };
        var chunks = new Option<int>("--chunks") { Description = "Evaluate at most this many chunks; -1 = all", DefaultValueFactory = _ => -1 };
        var klBase = new Option<string?>("--kl-divergence-base")
        {
            Description = "Save the model's log-probabilities to this file (llama-perplexity's format); with --kl-divergence, read them from it",
        };
        var kl = new Option<bool>("--kl-divergence")
        {
            Description = "Compare the model with the base file's distributions: KL divergence, top-1 agreement, perplexity ratio and difference",
        };

        var flashAttention = RuntimeFlags.CreateFlashAttention();
        var loadMode = new LoadModeFlags();

        var command = new Command("perplexity", "Measure a model's perplexity on a text file, as llama.cpp's llama-perplexity does");
        foreach (Option o in new Option[] { model, file, context, threads, chunks, klBase, kl, flashAttention })
            command.Options.Add(o);
        loadMode.AddTo(command);
        // --file is required unless the tokens come from a base file
        command.Validators.Add(result =>
        {
            if (result.GetValue(file) is null && !result.GetValue(kl))
                result.AddError("Option '--file' is required (the text to measure).");
        });

        command.SetAction((r, cancellation) =>
        {
            int n = r.GetValue(context);
            int t = r.GetValue(threads);
            int maxChunks = r.GetValue(chunks);
            bool flash = r.GetValue(flashAttention);
            var mode = loadMode.Resolve(r);
            if (n < 0)
                throw new CliException($"--ctx-size {n} must not be negative");
            if (t < 0 || t > 1024)
                throw new CliException($"--threads {t} is out of range (1 to 1024, or 0 for the default)");
            if (maxChunks == 0 || maxChunks < -1)
                throw new CliException($"--chunks {maxChunks} must be at least 1, or -1 for all");

            string? basePath = r.GetValue(klBase);
            if (r.GetValue(kl))
            {
                if (basePath is null)
                    throw new CliException("--kl-divergence needs --kl-divergence-base FILE (the base model's log-probabilities, saved by a run with --kl-divergence-base alone)");
                return Task.FromResult(CompareWithBase(io, r.GetValue(model)!, basePath, n, t, maxChunks, flash, mode, cancellation));
            }
            string textPath = r.GetValue(file)!;
            string text = ReadText(textPath);
            string modelPath = r.GetValue(model)!;
            if (!File.Exists(modelPath))
                throw new FileNotFoundException($"model file not found: {modelPath}", modelPath);

            var (loaded, gguf, modelContext, vocab) = Load(modelPath, mode);
            using var llama = loaded;
            var tokenizer = Tokenizer.FromGguf(gguf);
            if (n == 0)
                n = Math.Min(PerplexityOptions.DefaultContextLength, modelContext);
            using var evaluator = Create(llama, tokenizer, new PerplexityOptions
            {
                ContextLength = n,
                Threads = t,
                MaxChunks = Math.Max(maxChunks, 0),
                FlashAttention = flash,
            });

            int[] tokens = evaluator.Tokenize(text);
            int total = evaluator.ChunkCount(tokens.Length);
            if (total == 0)
                throw new CliException(
                    $"{textPath} is {tokens.Length} tokens long, but a context of {n} needs at least {n} tokens (one chunk); give a longer text or a smaller --ctx-size");
            io.Error.WriteLine($"kiln: {tokens.Length} tokens; calculating perplexity over {total} chunks, n_ctx={n}, {evaluator.ThreadCount} threads");

            using var saved = basePath is null
                ? null
                : new KlDivergenceBaseWriter(basePath, n, vocab, tokens.AsSpan(0, total * n));
            var result = evaluator.Evaluate(tokens, chunk =>
            {
                io.Out.Write(string.Create(CultureInfo.InvariantCulture, $"[{chunk.Number}]{chunk.RunningPerplexity:F4},"));
                io.Out.Flush();
            }, cancellation, saved);
            if (saved is not null)
            {
                saved.Commit();
                io.Error.WriteLine($"kiln: saved the log-probabilities of {total} chunks to {basePath}");
            }
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

    /// <summary>
    /// --kl-divergence: evaluates the base file's tokens with the same chunking and prints llama-perplexity's
    /// final statistics (perplexity of both, their ratio and difference, KLD percentiles, Δp, same top).
    /// </summary>
    private static int CompareWithBase(CliIO io, string modelPath, string basePath, int n, int threads, int maxChunks, bool flash, GgufLoadMode mode, CancellationToken cancellation)
    {
        if (!File.Exists(basePath))
            throw new FileNotFoundException($"KL-divergence base file not found: {basePath}", basePath);
        using var reference = KlDivergenceBaseReader.Open(basePath);
        if (n != 0 && n != reference.ContextLength)
            throw new CliException($"--ctx-size {n} differs from the base file's {reference.ContextLength}; leave it out or match it");
        if (!File.Exists(modelPath))
            throw new FileNotFoundException($"model file not found: {modelPath}", modelPath);
        var (loaded, file, _, vocab) = Load(modelPath, mode);
        using var llama = loaded;
        if (vocab != reference.Vocab)
            throw new InvalidDataException($"{modelPath} has {vocab} tokens, but {basePath} was made with a {reference.Vocab}-token vocabulary");
        var tokenizer = Tokenizer.FromGguf(file);
        using var evaluator = Create(llama, tokenizer, new PerplexityOptions
        {
            ContextLength = reference.ContextLength,
            Threads = threads,
            MaxChunks = Math.Max(maxChunks, 0),
            FlashAttention = flash,
        });
        var accumulator = new KlDivergenceAccumulator(reference);
        int total = evaluator.ChunkCount(reference.Tokens.Length);
        io.Error.WriteLine($"kiln: comparing with {basePath}: {total} chunks, n_ctx={reference.ContextLength}, {evaluator.ThreadCount} threads");
        evaluator.Evaluate(reference.Tokens, chunk =>
        {
            io.Out.Write(string.Create(CultureInfo.InvariantCulture, $"[{chunk.Number}]{chunk.RunningPerplexity:F4},"));
            io.Out.Flush();
        }, cancellation, accumulator);
        io.Out.WriteLine();
        WriteStatistics(io.Out, accumulator.Result());
        return 0;
    }

    private static void WriteStatistics(TextWriter o, KlDivergenceResult k)
    {
        string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
        o.WriteLine("====== Perplexity statistics ======");
        o.WriteLine(F($"Mean PPL(Q)                   : {k.Perplexity.Value,10:F6} ± {k.Perplexity.Error,10:F6}"));
        o.WriteLine(F($"Mean PPL(base)                : {k.BasePerplexity.Value,10:F6} ± {k.BasePerplexity.Error,10:F6}"));
        o.WriteLine(F($"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * k.LogPerplexityCorrelation,6:F2}%"));
        o.WriteLine(F($"Mean ln(PPL(Q)/PPL(base))     : {k.LogPerplexityRatio.Value,10:F6} ± {k.LogPerplexityRatio.Error,10:F6}"));
        double ratio = Math.Exp(k.LogPerplexityRatio.Value);
        o.WriteLine(F($"Mean PPL(Q)/PPL(base)         : {ratio,10:F6} ± {ratio * k.LogPerplexityRatio.Error,10:F6}"));
        o.WriteLine(F($"Mean PPL(Q)-PPL(base)         : {k.PerplexityDifference.Value,10:F6} ± {k.PerplexityDifference.Error,10:F6}"));
        o.WriteLine();
        o.WriteLine("====== KL divergence statistics ======");
        o.WriteLine(F($"Mean    KLD: {k.MeanKld.Value,10:F6} ± {k.MeanKld.Error,10:F6}"));
        o.WriteLine(F($"Maximum KLD: {k.MaxKld,10:F6}"));
        o.WriteLine(F($"99.9%   KLD: {k.Kld99_9,10:F6}"));
        o.WriteLine(F($"99.0%   KLD: {k.Kld99,10:F6}"));
        o.WriteLine(F($"Median  KLD: {k.MedianKld,10:F6}"));
        o.WriteLine(F($"10.0%   KLD: {k.Kld10,10:F6}"));
        o.WriteLine(F($" 5.0%   KLD: {k.Kld5,10:F6}"));
        o.WriteLine(F($" 1.0%   KLD: {k.Kld1,10:F6}"));
        o.WriteLine(F($"Minimum KLD: {k.MinKld,10:F6}"));
        o.WriteLine();
        o.WriteLine("====== Token probability statistics ======");
        o.WriteLine(F($"Mean    Δp: {100 * k.MeanProbabilityDifference.Value,6:F3} ± {100 * k.MeanProbabilityDifference.Error,5:F3} %"));
        o.WriteLine(F($"Maximum Δp: {100 * k.MaxProbabilityDifference,6:F3}%"));
        o.WriteLine(F($"Median  Δp: {100 * k.MedianProbabilityDifference,6:F3}%"));
        o.WriteLine(F($"Minimum Δp: {100 * k.MinProbabilityDifference,6:F3}%"));
        o.WriteLine(F($"RMS Δp    : {100 * k.RmsProbabilityDifference.Value,6:F3} ± {100 * k.RmsProbabilityDifference.Error,5:F3} %"));
        o.WriteLine(F($"Same top p: {100 * k.SameTop.Value,6:F3} ± {100 * k.SameTop.Error,5:F3} %"));
        o.Flush();
    }

    /// <summary>A Llama-family or GPT-2 model, by general.architecture, with its file, context length and vocabulary.</summary>
    private static (IDisposable Model, GgufFile File, int ContextLength, int Vocab) Load(string path, GgufLoadMode mode)
    {
        var file = GgufFile.Open(path, mode);
        try
        {
            if (file.TryGetString("general.architecture") == Gpt2Config.Architecture)
            {
                var gpt2 = new Gpt2Model(file, ownsFile: true);
                return (gpt2, file, gpt2.Config.ContextLength, gpt2.Config.VocabSize);
            }
            var llama = new LlamaModel(file, ownsFile: true);
            return (llama, file, llama.Config.ContextLength, llama.Config.VocabSize);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The evaluator, with bad option values (odd or oversized context …) reported as usage errors.</summary>
    private static PerplexityEvaluator Create(IDisposable model, Tokenizer tokenizer, PerplexityOptions options)
    {
        try
        {
            return model is Gpt2Model gpt2
                ? new PerplexityEvaluator(gpt2, tokenizer, options)
                : new PerplexityEvaluator((LlamaModel)model, tokenizer, options);
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
