using System.CommandLine;
using Kiln.Models.Lora;
using Kiln.Tensors;
using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Export;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln export: a training checkpoint (Llama or GPT-2 family) to a GGUF model (llama.cpp's "llama" or "gpt2"
/// architecture) for kiln run and llama.cpp; with --merge-lora,
/// a base GGUF with LoRA adapters baked in.
/// </summary>
internal static class ExportCommand
{
    public static Command Create(CliIO io)
    {
        var checkpoint = new Argument<string>("CKPT") { Description = "Training checkpoint (checkpoint.bin in a kiln train output folder), or the base GGUF with --merge-lora" };
        var output = new Option<string>("--output", "-o") { Description = "GGUF file to write", Required = true };
        var type = new Option<string>("--type") { Description = "Weight type: f32, f16 or q8_0 (norms stay f32); with --merge-lora f32, f16 or base (requantize to the base's type)", DefaultValueFactory = _ => "f16" };
        var mergeLora = new Option<string[]>("--merge-lora") { Description = "LoRA adapter GGUF to bake into the base model given as CKPT (repeatable)", AllowMultipleArgumentsPerToken = false };
        var tokenizer = new Option<string>("--tokenizer") { Description = "Tokenizer JSON; default: tokenizer.json beside the checkpoint" };
        var command = new Command("export", "Export a trained checkpoint (Llama or GPT-2 family) as a GGUF model");
        command.Arguments.Add(checkpoint);
        command.Options.Add(output);
        command.Options.Add(type);
        command.Options.Add(tokenizer);
        command.Options.Add(mergeLora);
        command.SetAction(r =>
        {
            string[] adapterPaths = r.GetValue(mergeLora) ?? [];
            if (adapterPaths.Length > 0)
                return MergeLora(io, r.GetValue(checkpoint)!, adapterPaths, r.GetValue(type)!, r.GetValue(output)!);
            GgmlType ggmlType = r.GetValue(type) switch
            {
                "f32" => GgmlType.F32,
                "f16" => GgmlType.F16,
                "q8_0" => GgmlType.Q8_0,
                var other => throw new CliException($"--type '{other}' is not one of f32, f16, q8_0"),
            };
            string ckptPath = r.GetValue(checkpoint)!;
            string tokPath = r.GetValue(tokenizer) ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(ckptPath))!, "tokenizer.json");
            var ckpt = TrainingCheckpoint.Read(ckptPath);
            if (!File.Exists(tokPath))
                throw new FileNotFoundException($"tokenizer not found: {tokPath} (pass --tokenizer)", tokPath);
            var tok = TrainingTokenizer.Load(tokPath);
            string outPath = r.GetValue(output)!;
            bool gpt2 = ckpt.Config.Family == ModelFamily.Gpt2;
            if (gpt2)
                Gpt2GgufExporter.Export(ckpt.Config, ckpt.Weights, tok, outPath, ggmlType);
            else
                LlamaGgufExporter.Export(ckpt.Config, ckpt.Weights, tok, outPath, ggmlType);
            io.Out.WriteLine($"wrote {outPath}: {(gpt2 ? "gpt2" : "llama")} {ckpt.Config.Layers} layers × {ckpt.Config.Dim}, {ckpt.Weights.Length:N0} parameters, step {ckpt.Step}, {r.GetValue(type)}");
            return 0;
        });
        return command;
    }

    private static int MergeLora(CliIO io, string basePath, string[] adapterPaths, string type, string outPath)
    {
        GgmlType? ggmlType = type switch
        {
            "f32" => GgmlType.F32,
            "f16" => GgmlType.F16,
            "base" => null,
            var other => throw new CliException($"--type '{other}' is not one of f32, f16, base when merging LoRA adapters"),
        };
        if (!File.Exists(basePath))
            throw new FileNotFoundException($"model file not found: {basePath}", basePath);
        var adapters = adapterPaths.Select(LoraAdapter.Load).ToArray();
        LoraMergeExporter.Merge(basePath, adapters, outPath, ggmlType);
        io.Out.WriteLine($"wrote {outPath}: {basePath} with {adapters.Sum(a => a.Weights.Count)} matrices updated by {adapters.Length} LoRA adapter(s), as {type}");
        return 0;
    }
}
