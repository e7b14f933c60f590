using System.CommandLine;
using System.Text;
using Kiln.Training.Data;

namespace Kiln.Cli.Commands;

/// <summary>kiln tokenizer train: learns a byte-level BPE vocabulary for kiln data prepare / train / export.</summary>
internal static class TokenizerCommand
{
    public static Command Create(CliIO io)
    {
        var command = new Command("tokenizer", "Train tokenizers");
        var files = new Argument<string[]>("FILE") { Description = "UTF-8 text files", Arity = ArgumentArity.OneOrMore };
        var vocab = new Option<int>("--vocab") { Description = "Vocabulary size (256 bytes + merges + end of text)", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Tokenizer JSON to write", Required = true };
        var train = new Command("train", "Learn a byte-level BPE vocabulary (GPT-2 style; exported GGUFs carry it as a gpt2 tokenizer)");
        train.Arguments.Add(files);
        train.Options.Add(vocab);
        train.Options.Add(output);
        train.SetAction(r =>
        {
            int size = r.GetValue(vocab);
            if (size < BytePairVocabularyTrainer.MinimumVocab)
                throw new CliException($"--vocab {size} must be at least {BytePairVocabularyTrainer.MinimumVocab} (256 bytes + end of text)");
            var texts = new List<string>();
            foreach (string path in r.GetValue(files)!)
            {
                if (!File.Exists(path))
                    throw new FileNotFoundException($"text file not found: {path}", path);
                try
                {
                    texts.Add(new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path)));
                }
                catch (DecoderFallbackException e)
                {
                    throw new InvalidDataException($"{path} is not UTF-8 text (invalid bytes at offset {e.Index})");
                }
            }
            var tok = BytePairVocabularyTrainer.Train(texts, size);
            string outPath = r.GetValue(output)!;
            File.WriteAllText(outPath, tok.ToJson());
            io.Out.WriteLine($"wrote {outPath}: {tok.VocabSize} tokens ({tok.Merges.Count} merges)");
            return 0;
        });
        command.Subcommands.Add(train);
        return command;
    }
}
