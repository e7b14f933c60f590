using System.CommandLine;
using System.Globalization;
using System.Text;
using Kiln.Training.Data;

namespace Kiln.Cli.Commands;

/// <summary>kiln data prepare: text → train/validation token files for kiln train.</summary>
internal static class DataCommand
{
    public static Command Create(CliIO io)
    {
        var command = new Command("data", "Prepare training data");
        command.Subcommands.Add(CreatePrepare(io));
        return command;
    }

    private static Command CreatePrepare(CliIO io)
    {
        var file = new Argument<string>("FILE") { Description = "UTF-8 text to tokenize" };
        var tokenizer = new Option<string>("--tokenizer")
        {
            Description = "'char' (build a character vocabulary from FILE, saved as tokenizer.json beside the train file) or a tokenizer JSON file (kiln tokenizer train, or a saved char vocabulary)",
            Required = true,
        };
        var output = new Option<string[]>("--output", "-o")
        {
            Description = "The train and validation token files to write",
            Required = true,
            Arity = new ArgumentArity(2, 2),
            AllowMultipleArgumentsPerToken = true,
        };
        var valFraction = new Option<double>("--val-fraction")
        {
            Description = "Share of the tokens (taken from the end) for validation",
            DefaultValueFactory = _ => 0.1,
        };
        var command = new Command("prepare", "Tokenize a text file into train and validation token streams (the file's last part is validation)");
        command.Arguments.Add(file);
        command.Options.Add(tokenizer);
        command.Options.Add(output);
        command.Options.Add(valFraction);
        command.SetAction(r =>
        {
            double fraction = r.GetValue(valFraction);
            if (!(fraction > 0 && fraction < 1))
                throw new CliException($"--val-fraction {fraction.ToString(CultureInfo.InvariantCulture)} must be between 0 and 1 (exclusive)");
            string[] outputs = r.GetValue(output)!;
            string textPath = r.GetValue(file)!;
            if (!File.Exists(textPath))
                throw new FileNotFoundException($"text file not found: {textPath}", textPath);
            string text;
            try
            {
                text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(textPath));
            }
            catch (DecoderFallbackException e)
            {
                throw new InvalidDataException($"{textPath} is not UTF-8 text (invalid bytes at offset {e.Index})");
            }

            string tokenizerName = r.GetValue(tokenizer)!;
            TrainingTokenizer tok;
            string? savedTokenizer = null;
            if (tokenizerName == "char")
            {
                tok = CharacterTokenizer.FromText(text);
                savedTokenizer = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outputs[0]))!, "tokenizer.json");
            }
            else
            {
                tok = TrainingTokenizer.Load(tokenizerName);
            }
            int[] tokens = tok.Encode(text);
            int valCount = (int)Math.Round(tokens.Length * fraction);
            int trainCount = tokens.Length - valCount;
            if (trainCount < 2 || valCount < 2)
                throw new CliException($"{textPath} gives {tokens.Length} tokens: too few to split into train and validation (each needs at least 2)");
            foreach (string o in outputs)
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(o))!);
            TokenStreamFile.Write(outputs[0], tokens.AsSpan(0, trainCount), tok.VocabSize);
            TokenStreamFile.Write(outputs[1], tokens.AsSpan(trainCount), tok.VocabSize);
            // the tokenizer travels with the data: kiln train copies it into its output, kiln export reads it from there
            savedTokenizer ??= Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outputs[0]))!, "tokenizer.json");
            if (Path.GetFullPath(savedTokenizer) != Path.GetFullPath(tokenizerName))
                File.WriteAllText(savedTokenizer, tok.ToJson());
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{tokens.Length} tokens (vocabulary {tok.VocabSize}): {trainCount} → {outputs[0]}, {valCount} → {outputs[1]}"));
            if (savedTokenizer is not null)
                io.Out.WriteLine($"tokenizer → {savedTokenizer}");
            return 0;
        });
        return command;
    }
}
