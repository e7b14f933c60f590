using System.CommandLine;
using Kiln.Inference.Chat;
using Kiln.Inference.Generation;
using Kiln.Models;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln chat: an interactive conversation rendered with the model's chat template. Like llama.cpp's
/// chat mode, each turn renders the whole conversation, keeps the part already in the KV cache and
/// evaluates only the new text, so a long conversation is not re-read every turn.
/// </summary>
internal static class ChatCommand
{
    public static Command Create(CliIO io)
    {
        var runtime = new RuntimeFlags();
        var sampling = new SamplingFlags();
        var system = new Option<string?>("--system", "-sys") { Description = "System prompt" };
        var count = new Option<int>("--n-predict", "-n") { Description = "Tokens per reply at most; -1 = until the end of the turn", DefaultValueFactory = _ => -1 };

        var command = new Command("chat", "Chat with a GGUF model interactively (one message per line; /reset, /exit)");
        runtime.AddTo(command);
        command.Options.Add(system);
        command.Options.Add(count);
        sampling.AddTo(command);

        command.SetAction((r, cancellation) =>
        {
            var samplerOptions = sampling.Read(r);
            int n = r.GetValue(count);
            if (n < -1)
                throw new CliException($"--n-predict {n} must be -1 or more");
            using var loaded = runtime.Load(r);
            var tokenizer = loaded.Tokenizer;
            var template = ChatTemplate.Detect(loaded.File.TryGetString("tokenizer.chat_template"));
            string bos = tokenizer.BosId >= 0 ? tokenizer.GetTokenText(tokenizer.BosId) : "";
            string eos = tokenizer.EosId >= 0 ? tokenizer.GetTokenText(tokenizer.EosId) : "";
            var generator = new TextGenerator(loaded.Context, tokenizer);
            var messages = new List<ChatMessage>();
            string? systemPrompt = r.GetValue(system);
            string evaluated = "";

            void Restart()
            {
                messages.Clear();
                if (!string.IsNullOrEmpty(systemPrompt))
                    messages.Add(new ChatMessage("system", systemPrompt));
                loaded.Context.Reset();
                evaluated = "";
            }

            Restart();
            io.Error.WriteLine($"kiln: chat template {template.Kind}; context {loaded.Context.ContextLength} tokens. Type a message, /reset to start over, /exit or end of input to quit.");
            while (!cancellation.IsCancellationRequested)
            {
                io.Error.Write("> ");
                string? line = io.In.ReadLine();
                if (line is null || line.Trim() == "/exit")
                    break;
                if (line.Trim() == "/reset")
                {
                    Restart();
                    continue;
                }
                if (line.Length == 0)
                    continue;

                messages.Add(new ChatMessage("user", line));
                string rendered = template.Render(messages, addGenerationPrompt: true, bos, eos);
                bool continues = evaluated.Length > 0 && rendered.StartsWith(evaluated, StringComparison.Ordinal);
                if (!continues)
                    loaded.Context.Reset();
                string fresh = continues ? rendered[evaluated.Length..] : rendered;
                int[] tokens = tokenizer.Encode(fresh, addSpecial: !continues, parseSpecial: true);

                if (loaded.Context.Position + tokens.Length >= loaded.Context.ContextLength)
                {
                    io.Error.WriteLine("kiln: the conversation no longer fits in the context; starting over (use --ctx-size for longer chats)");
                    Restart();
                    continue;
                }

                var sink = new StreamingTextSink(io.Out, capture: true);
                GenerationResult result;
                try
                {
                    result = generator.Generate(tokens, new GenerationOptions
                    {
                        MaxTokens = n,
                        Sampler = samplerOptions with { Seed = samplerOptions.Seed + (ulong)messages.Count },
                        StopStrings = template.DefaultStopStrings,
                    }, sink, cancellation);
                }
                catch (ContextOverflowException)
                {
                    io.Out.WriteLine();
                    io.Error.WriteLine("kiln: the context is full; starting over");
                    Restart();
                    continue;
                }
                io.Out.WriteLine();
                io.Out.Flush();
                // The cache now holds exactly the rendered prompt plus the reply's tokens; the end-of-turn
                // text the template puts after the reply arrives with the next turn's new text.
                messages.Add(new ChatMessage("assistant", sink.Captured));
                evaluated = rendered + sink.Captured;
                if (result.StopReason == StopReason.ContextFull)
                {
                    io.Error.WriteLine("kiln: the context is full; starting over");
                    Restart();
                }
            }
            return Task.FromResult(0);
        });
        return command;
    }
}
