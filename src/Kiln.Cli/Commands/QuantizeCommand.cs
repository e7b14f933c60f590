using System.CommandLine;
using System.Globalization;
using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Quantization;
using Kiln.Tensors;
using Kiln.Threading;
using Kiln.Tokenizers;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln quantize: llama-quantize for GGUF models (see <see cref="GgufQuantizer"/>). One progress line per
/// tensor on stderr, in llama-quantize's layout, then the size before and after on stdout.
/// </summary>
internal static class QuantizeCommand
{
    private const double MiB = 1024.0 * 1024.0;

    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("IN") { Description = "GGUF model with F32, F16 or BF16 weights" };
        var output = new Argument<string>("OUT") { Description = "GGUF file to write" };
        var type = new Option<string>("--type")
        {
            Description = $"Target: {string.Join(", ", QuantizationMix.Known.Select(m => m.Name))} (Q3_K, Q4_K, Q5_K = the _M mixes)",
            Required = true,
        };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads; default: one per physical core" };
        var leaveOutput = new Option<bool>("--leave-output") { Description = "Keep output.weight unquantized" };
        var pure = new Option<bool>("--pure") { Description = "Every quantized tensor gets the default type (no per-tensor mix rules)" };
        var force = new Option<bool>("--force") { Description = "Overwrite OUT if it exists" };
        var imatrix = new Option<string?>("--imatrix") { Description = "Importance matrix (kiln imatrix / llama-imatrix imatrix.dat) weighing the rounding error" };
        var method = new Option<string>("--method") { Description = "rtn (round to nearest, llama-quantize's) or gptq", DefaultValueFactory = _ => "rtn" };
        var calib = new Option<string?>("--calib") { Description = "Calibration text for --method gptq" };
        var samples = new Option<int>("--samples") { Description = "GPTQ: calibration chunks (of min(512, model context) tokens)", DefaultValueFactory = _ => 128 };
        var damp = new Option<double>("--damp") { Description = "GPTQ: damping, a fraction of H's mean diagonal", DefaultValueFactory = _ => 0.01 };
        var actOrder = new Option<bool>("--act-order") { Description = "GPTQ: quantize columns in order of decreasing input energy" };
        var scales = new Option<string>("--scales")
        {
            Description = "GPTQ, Q4_0/Q5_0 blocks: search (the scale minimizing the block's error weighted by 1/[H⁻¹]ᵢᵢ) or max (the reference quantizer's)",
            DefaultValueFactory = _ => "search",
        };
        var onePass = new Option<bool>("--one-pass")
        {
            Description = "GPTQ: every layer's Hessians from one pass of the unquantized model (faster, more memory; later layers do not see earlier layers' quantization error)",
        };

        var command = new Command("quantize", "Quantize a GGUF model to Q8_0, Q4_0 … or a K mix (Q4_K_M …) as llama.cpp's llama-quantize does");
        command.Arguments.Add(input);
        command.Arguments.Add(output);
        foreach (Option o in new Option[] { type, threads, leaveOutput, pure, force, imatrix, method, calib, samples, damp, actOrder, scales, onePass })
            command.Options.Add(o);

        command.SetAction(r =>
        {
            string inPath = r.GetValue(input)!, outPath = r.GetValue(output)!;
            QuantizationMix mix;
            try
            {
                mix = QuantizationMix.Parse(r.GetValue(type)!);
            }
            catch (FormatException e)
            {
                throw new CliException(e.Message);
            }
            int t = r.GetValue(threads);
            if (t < 0 || t > 1024)
                throw new CliException($"--threads {t} is out of range (1 to 1024, or 0 for the default)");
            if (!File.Exists(inPath))
                throw new FileNotFoundException($"file not found: {inPath}", inPath);
            if (GgufQuantizer.IsSameFile(inPath, outPath))
                throw new CliException($"IN and OUT are the same file ({inPath}); write the quantized model elsewhere");
            if ((File.Exists(outPath) || Directory.Exists(outPath)) && !r.GetValue(force))
                throw new IOException($"{outPath} exists; pass --force to overwrite it");
            bool gptq = r.GetValue(method)?.ToLowerInvariant() switch
            {
                "rtn" => false,
                "gptq" => true,
                var m => throw new CliException($"--method {m} is not known (rtn or gptq)"),
            };
            string? calibPath = r.GetValue(calib);
            bool searchScales = r.GetValue(scales)?.ToLowerInvariant() switch
            {
                "search" => true,
                "max" => false,
                var s => throw new CliException($"--scales {s} is not known (search or max)"),
            };
            if (gptq)
            {
                if (!GptqQuantizer.Supports(mix.DefaultType))
                    throw new CliException($"--method gptq writes Q4_0, Q5_0, Q8_0, Q4_K (Q4_K_M, Q4_K_S) and Q6_K, not {mix.Name}");
                if (calibPath is null)
                    throw new CliException("--method gptq needs --calib FILE (calibration text)");
                if (r.GetValue(samples) < 1)
                    throw new CliException($"--samples {r.GetValue(samples)} must be at least 1");
                if (!(r.GetValue(damp) >= 0 && r.GetValue(damp) < 1))
                    throw new CliException($"--damp {r.GetValue(damp)} must be in [0, 1)");
            }
            else if (calibPath is not null || r.GetValue(actOrder) || r.GetValue(onePass) || r.GetResult(scales) is { Implicit: false })
            {
                throw new CliException("--calib, --act-order, --scales and --one-pass belong to --method gptq");
            }
            ImportanceMatrix? importance = null;
            if (r.GetValue(imatrix) is { } imatrixPath)
            {
                if (!File.Exists(imatrixPath))
                    throw new FileNotFoundException($"importance matrix not found: {imatrixPath}", imatrixPath);
                importance = ImportanceMatrix.Read(imatrixPath);
            }

            var options = new QuantizationOptions
            {
                Mix = mix,
                Threads = t == 0 ? WorkerPool.DefaultThreadCount() : t,
                LeaveOutput = r.GetValue(leaveOutput),
                Pure = r.GetValue(pure),
                TensorWritten = p => io.Error.WriteLine(Describe(p.Tensor, p.Number, p.Total)),
                Importance = importance,
            };
            string how = (gptq ? ", GPTQ" : "") + (importance is null ? "" : ", imatrix");
            io.Error.WriteLine($"kiln: quantizing {inPath} to {outPath} as {mix.Name}{how} with {options.Threads} threads");
            if (gptq && r.GetValue(onePass))
            {
                var hessians = Calibrate(io, inPath, CalibrationText.Read(calibPath!), options, r.GetValue(samples));
                options = options with
                {
                    Gptq = new GptqOptions(hessians.Hessian) { Damp = r.GetValue(damp), ActOrder = r.GetValue(actOrder), SearchScales = searchScales },
                };
            }
            else if (gptq)
            {
                var calibration = new GptqCalibration(CalibrationText.Read(calibPath!))
                {
                    Samples = r.GetValue(samples),
                    Damp = r.GetValue(damp),
                    ActOrder = r.GetValue(actOrder),
                    SearchScales = searchScales,
                };
                try
                {
                    options = options with { Precomputed = LayerwiseGptq.Run(inPath, options, calibration, line => io.Error.WriteLine("kiln: " + line)) };
                }
                catch (ArgumentException e) when (e is not ArgumentNullException)
                {
                    throw new CliException(e.Message);
                }
            }
            
            var summary = GgufQuantizer.Quantize(inPath, outPath, options);

            if (summary.Fallbacks.Count > 0)
            {
                io.Error.WriteLine(
                    $"kiln: warning: {summary.Fallbacks.Count} of {summary.Tensors.Count} tensors have rows that are not a multiple of the planned type's block and were written as a type that fits:");
                foreach (var f in summary.Fallbacks)
                    io.Error.WriteLine($"kiln: warning:   {f.Name} [{string.Join(", ", f.Dimensions)}]: {GgmlTypeTraits.Name(f.FallbackFrom!.Value)} -> {GgmlTypeTraits.Name(f.TargetType)}");
            }
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"model size  = {summary.SourceTensorBytes / MiB:F2} MiB ({summary.SourceBitsPerWeight:F2} bpw)"));
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"quant size  = {summary.OutputTensorBytes / MiB:F2} MiB ({summary.OutputBitsPerWeight:F2} bpw)"));
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {outPath} ({mix.Name}, {summary.OutputFileBytes / MiB:F2} MiB) in {summary.Elapsed.TotalSeconds:F2} s"));
            return 0;
        });
        return command;
    }

    /// <summary>
    /// GPTQ's calibration pass: the input model (checked first to be unquantized, so that nothing runs for a file
    /// that will be refused) evaluates the calibration text, and a <see cref="HessianCollector"/> gathers every
    /// layer's input statistics in that one pass.
    /// </summary>
    private static HessianCollector Calibrate(CliIO io, string inPath, string text, QuantizationOptions options, int samples)
    {
        using (var source = GgufFile.Open(inPath))
            QuantizationPlan.Create(source, options);
        using var model = LlamaModel.Load(inPath);
        var tokenizer = Tokenizer.FromGguf(model.File);
        int n = Math.Min(512, model.Config.ContextLength);
        var collector = new HessianCollector();
        int chunks;
        try
        {
            chunks = CalibrationRun.Run(model, tokenizer, text, n, samples, options.Threads, collector);
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message);
        }
        io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"kiln: GPTQ calibration: {chunks} chunks of {n} tokens, Hessians {collector.ByteSize / MiB:F1} MiB"));
        return collector;
    }

    private static string Describe(TensorQuantization t, int index, int total)
    {
        string dims = string.Join(", ", t.Dimensions.Select(d => d.ToString(CultureInfo.InvariantCulture).PadLeft(5)));
        string action = t.IsCopied
            ? "size = " + Mib(t.SourceBytes)
            : $"converting to {GgmlTypeTraits.Name(t.TargetType)} .. size = {Mib(t.SourceBytes)} -> {Mib(t.TargetBytes)}";
        return string.Create(CultureInfo.InvariantCulture,
            $"[{index,4}/{total,4}] {t.Name,36} - [{dims}], type = {GgmlTypeTraits.Name(t.SourceType),6}, {action}");
    }

    private static string Mib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / MiB,8:F2} MiB");
}
