using System.CommandLine;
using System.Text;
using Kiln.Tokenizers;

namespace Kiln.Cli.Commands;

/// <summary>kiln tokenize: prints a text's tokens as llama.cpp's llama-tokenize does ("    id -> 'piece'", or [ids]).</summary>
internal static class TokenizeCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF model or vocabulary-only file", Required = true };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Text to tokenize" };
        var file = new Option<string?>("--file", "-f") { Description = "Tokenize this file's text" };
        var ids = new Option<bool>("--ids") { Description = "Print only the ids, as a list" };
        var noBos = new Option<bool>("--no-bos") { Description = "Do not add the BOS/EOS tokens the model asks for" };
        var noParseSpecial = new Option<bool>("--no-parse-special") { Description = "Treat special-token text such as <s> as plain text" };
        var showCount = new Option<bool>("--show-count") { Description = "Also print the number of tokens" };

        var command = new Command("tokenize", "Print the tokens of a text (ids and pieces), as llama-tokenize does");
        foreach (Option o in new Option[] { model, prompt, file, ids, noBos, noParseSpecial, showCount })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            string? text = r.GetValue(prompt);
            string? path = r.GetValue(file);
            if ((text is null) == (path is null))
                throw new CliException("give the text with exactly one of --prompt or --file");
            if (path is not null)
                text = File.ReadAllText(path);

            var (gguf, tokenizer) = RuntimeFlags.LoadTokenizer(r.GetValue(model)!);
            using (gguf)
            {
                int[] tokens = tokenizer.Encode(text!, addSpecial: !r.GetValue(noBos), parseSpecial: !r.GetValue(noParseSpecial));
                if (r.GetValue(ids))
                {
                    io.Out.WriteLine("[" + string.Join(", ", tokens) + "]");
                }
                else
                {
                    foreach (int id in tokens)
                        io.Out.WriteLine($"{id,6} -> '{Piece(tokenizer, id)}'");
                }
                if (r.GetValue(showCount))
                    io.Out.WriteLine($"Total number of tokens: {tokens.Length}");
            }
            return 0;
        });
        return command;
    }

    /// <summary>The token's text as llama.cpp renders it with special tokens shown (control tokens by name).</summary>
    internal static string Piece(Tokenizer tokenizer, int id)
    {
        var type = tokenizer.GetTokenType(id);
        if (type is TokenType.Control or TokenType.Unknown)
            return tokenizer.GetTokenText(id);
        Span<byte> bytes = stackalloc byte[256];
        int n = tokenizer.DecodeTokenBytes(id, bytes);
        return Encoding.UTF8.GetString(bytes[..n]);
    }
}
