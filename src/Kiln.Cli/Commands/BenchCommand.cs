using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Kiln.Benchmarking;
using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln bench: llama-bench's prompt-processing (pp) and text-generation (tg) speeds for a GGUF file or a
/// synthetic model with random weights, and the machine's memory read bandwidth that bounds tg.
/// </summary>
internal static class BenchCommand
{
    public const int MaxTokens = 16384;
    public const int MaxRepetitions = 1000;
    public const int MaxThreads = 1024;

    /// <summary>The bandwidth figure printed beside tg when --memory was not asked for: short, but still 8× a large L3.</summary>
    private const long QuickMemoryBytes = 256L << 20;
    private const int QuickMemoryPasses = 3;
    private const int MemoryPasses = 7;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };

    public static Command Create(CliIO io)
    {
        var model = new Option<string?>("--model", "-m") { Description = "GGUF model file to measure" };
        var synthetic = new Option<string?>("--synthetic")
        {
            Description = "Measure a model of this shape with random weights instead of a file: " +
                string.Join(", ", SyntheticModelShape.Presets.Select(p => p.Name)),
        };
        var type = new Option<string?>("--type")
        {
            Description = "Weight type of the synthetic model (default f16): " + string.Join(", ", SyntheticWeightScheme.AvailableNames),
        };
        var prompt = new Option<int>("--n-prompt", "-p") { Description = "Prompt tokens of the pp test; 0 = skip it", DefaultValueFactory = _ => 512 };
        var generate = new Option<int>("--n-gen", "-n") { Description = "Tokens of the tg test; 0 = skip it", DefaultValueFactory = _ => 128 };
        var threads = new Option<int>("--threads", "-t") { Description = $"Worker threads; default: one per physical core ({WorkerPool.DefaultThreadCount()} here)" };
        var repetitions = new Option<int>("--repetitions", "-r") { Description = "Timed repetitions of each test, after one warm-up", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "Print one JSON document instead of the table" };
        var memory = new Option<bool>("--memory") { Description = "Also measure the memory read bandwidth (alone: only that)" };
        var flashAttention = RuntimeFlags.CreateFlashAttention();
        var loadMode = new LoadModeFlags();
        var memoryMib = new Option<int>("--memory-mib") { Description = "Buffer of the --memory measurement, in MiB (far above the last-level cache)", DefaultValueFactory = _ => 1024 };

        var command = new Command("bench", "Measure prompt and generation speed (tokens/s) like llama-bench, and memory read bandwidth");
        foreach (Option o in new Option[] { model, synthetic, type, prompt, generate, threads, repetitions, json, memory, memoryMib, flashAttention })
            command.Options.Add(o);
        loadMode.AddTo(command);

        command.SetAction(r =>
        {
            string? modelPath = r.GetValue(model);
            string? shapeName = r.GetValue(synthetic);
            string? typeName = r.GetValue(type);
            int p = r.GetValue(prompt), n = r.GetValue(generate), reps = r.GetValue(repetitions), t = r.GetValue(threads);
            int mib = r.GetValue(memoryMib);
            bool wantMemory = r.GetValue(memory);
            var mode = loadMode.Resolve(r);

            if (modelPath is not null && shapeName is not null)
                throw new CliException("give either --model or --synthetic, not both");
            if (modelPath is null && shapeName is null && !wantMemory)
                throw new CliException("give a model with --model FILE or --synthetic NAME (or --memory alone to measure memory bandwidth)");
            if (typeName is not null && shapeName is null)
                throw new CliException("--type applies to --synthetic models only");
            Range("--n-prompt", p, 0, MaxTokens);
            Range("--n-gen", n, 0, MaxTokens);
            Range("--repetitions", reps, 1, MaxRepetitions);
            if (t < 0 || t > MaxThreads)
                throw new CliException($"--threads {t} is out of range (1 to {MaxThreads}, or 0 for the default)");
            Range("--memory-mib", mib, 16, 1 << 20);
            bool hasModel = modelPath is not null || shapeName is not null;
            int threadCount = t > 0 ? t : WorkerPool.DefaultThreadCount();

            SyntheticModelShape? shape = null;
            SyntheticWeightScheme? scheme = null;
            if (shapeName is not null)
            {
                shape = SyntheticModelShape.Find(shapeName)
                    ?? throw new CliException($"unknown synthetic model '{shapeName}' (known: {string.Join(", ", SyntheticModelShape.Presets.Select(s => s.Name))})");
                try
                {
                    scheme = SyntheticWeightScheme.Parse(typeName ?? "f16");
                }
                catch (Exception e) when (e is ArgumentException or NotSupportedException)
                {
                    throw new CliException(e.Message);
                }
                var missing = scheme.UnsupportedTypesFor(shape);
                if (missing.Count > 0)
                    throw new CliException($"{shape.Name} as {scheme.Name} needs {string.Join(", ", missing.Select(GgmlTypeTraits.Name))} weights, which Kiln does not support yet");
            }
            if (hasModel && p == 0 && n == 0)
                throw new CliException("--n-prompt and --n-gen are both 0: nothing to measure");
            if (modelPath is not null && !File.Exists(modelPath))
                throw new FileNotFoundException($"model file not found: {modelPath}", modelPath);

            BenchReport.ModelInfo? info = null;
            var measured = new List<InferenceMeasurement>();
            if (hasModel)
                (info, measured) = MeasureModel(io, modelPath, shape, scheme, p, n, reps, threadCount, r.GetValue(flashAttention), mode);

            BenchReport.MemoryResult? bandwidth = null;
            if (wantMemory || n > 0 && hasModel)
            {
                long bytes = wantMemory ? (long)mib << 20 : QuickMemoryBytes;
                int passes = wantMemory ? MemoryPasses : QuickMemoryPasses;
                var bw = ReadBandwidthProbe.Measure(threadCount, bytes, passes);
                bandwidth = new BenchReport.MemoryResult(bw.Bytes, bw.Passes, bw.Threads, bw.BestGBps, bw.MedianGBps, bw.PassGBps, Quick: !wantMemory);
            }

            var tests = measured.Select(m =>
            {
                double? weights = m.Kind == InferenceTestKind.TextGeneration ? info!.WeightBytesPerToken * m.Mean / 1e9 : null;
                return new BenchReport.TestResult(m.Name, m.Kind == InferenceTestKind.PromptProcessing ? "pp" : "tg", m.Tokens,
                    m.Mean, m.StandardDeviation, m.TokensPerSecond, weights, weights / bandwidth?.BestGbps);
            }).ToList();
            var report = new BenchReport(info, threadCount, reps, r.GetValue(flashAttention), tests, bandwidth);

            if (r.GetValue(json))
                io.Out.WriteLine(JsonSerializer.Serialize(report, Json));
            else
                BenchTable.Write(io.Out, report);
            return 0;
        });
        return command;
    }

    private static (BenchReport.ModelInfo, List<InferenceMeasurement>) MeasureModel(
        CliIO io, string? path, SyntheticModelShape? shape, SyntheticWeightScheme? scheme, int p, int n, int reps, int threads, bool flash, GgufLoadMode mode)
    {
        SyntheticModel? synthetic = null;
        LlamaModel model;
        if (shape is not null)
        {
            io.Error.WriteLine($"kiln: building {shape.Name} {scheme!.Name} with random weights ({shape.ParameterCount / 1e9:F2} B parameters)");
            long start = Stopwatch.GetTimestamp();
            try
            {
                synthetic = SyntheticModel.Create(shape, scheme, loadMode: mode);
            }
            catch (NotSupportedException e)
            {
                throw new CliException(e.Message);
            }
            model = synthetic.Model;
            io.Error.WriteLine($"kiln: built in {Stopwatch.GetElapsedTime(start).TotalSeconds:F1} s");
        }
        else
        {
            model = LlamaModel.Load(path!, mode);
        }

        io.Error.WriteLine(model.File.LoadMode == GgufLoadMode.Copy
            ? $"kiln: weights copied into memory{(model.File.HugePagesAdvised ? " advised for huge pages" : "")} (--mmap maps them instead)"
            : "kiln: weights memory-mapped (--no-mmap copies them into huge-page memory)");
        try
        {
            var tensors = model.File.Tensors;
            long size = tensors.Sum(x => x.ByteSize);
            string weightType = scheme?.Name ?? string.Join("+", tensors.Where(x => x.Dimensions.Length == 2)
                .GroupBy(x => x.Type).OrderByDescending(g => g.Sum(x => x.ByteSize)).Select(g => GgmlTypeTraits.Name(g.Key)));
            var info = new BenchReport.ModelInfo(
                shape?.Name ?? Path.GetFileName(path!), shape is null ? "file" : "synthetic", path is null ? null : Path.GetFullPath(path),
                model.Config.Architecture, weightType, size, size / 1073741824.0, tensors.Sum(x => x.ElementCount), model.WeightBytesPerToken);

            var measured = new List<InferenceMeasurement>();
            using var context = new LlamaContext(model, new LlamaContextOptions
            {
                ContextLength = Math.Max(p, n),
                MaxBatch = Math.Clamp(p, 1, 512),
                Threads = threads,
                FlashAttention = flash,
            });
            if (p > 0)
                measured.Add(InferenceBenchmark.MeasurePrompt(context, p, reps));
            if (n > 0)
                measured.Add(InferenceBenchmark.MeasureGeneration(context, n, reps, FirstToken(model)));
            return (info, measured);
        }
        finally
        {
            if (synthetic is not null)
                synthetic.Dispose();
            else
                model.Dispose();
        }
    }

    /// <summary>BOS when the file names one inside the vocabulary (llama-bench starts tg from it), else token 0.</summary>
    private static int FirstToken(LlamaModel model)
    {
        long? bos = model.File.TryGetInteger("tokenizer.ggml.bos_token_id");
        return bos is { } b && b >= 0 && b < model.Config.VocabSize ? (int)b : 0;
    }

    private static void Range(string flag, int value, int min, int max)
    {
        if (value < min || value > max)
            throw new CliException($"{flag} {value} is out of range ({min} to {max})");
    }
}
