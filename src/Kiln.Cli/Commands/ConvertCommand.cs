using System.CommandLine;
using Kiln.Formats.Llama2c;

namespace Kiln.Cli.Commands;

/// <summary>kiln convert: a llama2.c checkpoint and tokenizer to a Llama GGUF.</summary>
internal static class ConvertCommand
{
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("IN") { Description = "llama2.c checkpoint (.bin)" };
        var output = new Argument<string>("OUT") { Description = "GGUF file to write" };
        var tokenizer = new Option<string>("--tokenizer") { Description = "llama2.c tokenizer.bin for the checkpoint", Required = true };
        var command = new Command("convert", "Convert a llama2.c checkpoint (.bin + tokenizer.bin) to a Llama GGUF file that llama.cpp and kiln run");
        command.Arguments.Add(input);
        command.Arguments.Add(output);
        command.Options.Add(tokenizer);
        command.SetAction(r =>
        {
            string inPath = r.GetValue(input)!, outPath = r.GetValue(output)!, tokPath = r.GetValue(tokenizer)!;
            foreach (string p in new[] { inPath, tokPath })
            {
                if (!File.Exists(p))
                    throw new FileNotFoundException($"file not found: {p}", p);
            }
            var summary = Llama2cConverter.Convert(inPath, tokPath, outPath);
            io.Out.WriteLine($"wrote {summary}");
            return 0;
        });
        return command;
    }
}
