using System.CommandLine;
using Kiln.Models.Llama;
using Kiln.Quantization;
using Kiln.Tokenizers;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln imatrix: llama-imatrix's importance matrix (per weight and input column, the mean squared activation on
/// calibration text), written in its imatrix.dat layout for <c>kiln quantize --imatrix</c> (or llama-quantize).
/// </summary>
internal static class ImatrixCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF model (F32 or F16 for the most faithful statistics)", Required = true };
        var file = new Option<string>("--file", "-f") { Description = "UTF-8 calibration text", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "File to write", DefaultValueFactory = _ => "imatrix.dat" };
        var context = new Option<int>("--ctx", "-c") { Description = "Tokens per chunk; default 512 or the model's context length if smaller" };
        var chunks = new Option<int>("--chunks") { Description = "Evaluate at most this many chunks; default all", DefaultValueFactory = _ => -1 };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads; default: one per physical core" };

        var command = new Command("imatrix", "Collect an importance matrix (llama-imatrix's imatrix.dat) from calibration text");
        foreach (Option o in new Option[] { model, file, output, context, chunks, threads })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            string modelPath = r.GetValue(model)!, textPath = r.GetValue(file)!, outPath = r.GetValue(output)!;
            int n = r.GetValue(context), max = r.GetValue(chunks), t = r.GetValue(threads);
            if (n < 0)
                throw new CliException($"--ctx {n} must not be negative");
            if (max == 0 || max < -1)
                throw new CliException($"--chunks {max} must be at least 1, or -1 for all");
            if (t < 0 || t > 1024)
                throw new CliException($"--threads {t} is out of range (1 to 1024, or 0 for the default)");
            string text = CalibrationText.Read(textPath);
            if (!File.Exists(modelPath))
                throw new FileNotFoundException($"model file not found: {modelPath}", modelPath);

            using var llama = LlamaModel.Load(modelPath);
            var tokenizer = Tokenizer.FromGguf(llama.File);
            if (n == 0)
                n = Math.Min(512, llama.Config.ContextLength);
            var collector = new ImportanceMatrixCollector();
            int done;
            try
            {
                done = CalibrationRun.Run(llama, tokenizer, text, n, Math.Max(max, 0), t, collector,
                    (c, total) => io.Error.WriteLine($"kiln: imatrix chunk {c}/{total}"));
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }
            var matrix = collector.ToMatrix(done, Path.GetFileName(textPath));
            matrix.Write(outPath);
            io.Out.WriteLine($"wrote {outPath}: {matrix.Entries.Count} weights, {done} chunks of {n} tokens");
            return 0;
        });
        return command;
    }
}
