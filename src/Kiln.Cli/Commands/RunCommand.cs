using System.CommandLine;
using Kiln.Inference.Generation;

namespace Kiln.Cli.Commands;

/// <summary>kiln run: generate text from a prompt, streamed to stdout; speeds to stderr.</summary>
internal static class RunCommand
{
    public static Command Create(CliIO io)
    {
        var runtime = new RuntimeFlags();
        var sampling = new SamplingFlags();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Prompt text" };
        var promptFile = new Option<string?>("--file", "-f") { Description = "Read the prompt from this file" };
        var count = new Option<int>("--n-predict", "-n") { Description = "Tokens to generate; -1 = until end of text or a full context", DefaultValueFactory = _ => -1 };
        var stop = new Option<string[]>("--stop") { Description = "Stop when this text is generated (repeatable); it is not printed", AllowMultipleArgumentsPerToken = false };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Keep generating past end-of-text tokens" };
        var noDisplayPrompt = new Option<bool>("--no-display-prompt") { Description = "Print only the generated text, not the prompt" };

        var command = new Command("run", "Generate text from a prompt with a GGUF model");
        runtime.AddTo(command);
        command.Options.Add(prompt);
        command.Options.Add(promptFile);
        command.Options.Add(count);
        sampling.AddTo(command);
        command.Options.Add(stop);
        command.Options.Add(ignoreEos);
        command.Options.Add(noDisplayPrompt);

        command.SetAction((r, cancellation) =>
        {
            string? text = r.GetValue(prompt);
            string? file = r.GetValue(promptFile);
            if (text is not null && file is not null)
                throw new CliException("give the prompt with --prompt or --file, not both");
            if (file is not null)
                text = File.ReadAllText(file);
            text ??= "";
            int n = r.GetValue(count);
            if (n < -1)
                throw new CliException($"--n-predict {n} must be -1 or more");
            var samplerOptions = sampling.Read(r);
            string[] stops = r.GetValue(stop) ?? [];
            if (stops.Any(s => s.Length == 0))
                throw new CliException("--stop needs a non-empty text");

            using var loaded = runtime.Load(r);
            var tokenizer = loaded.Tokenizer;
            int[] tokens = tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
            if (tokens.Length == 0)
            {
                if (tokenizer.BosId < 0)
                    throw new CliException("the prompt is empty and the model has no BOS token to start from");
                tokens = [tokenizer.BosId];
            }
            int ctx = loaded.Context.ContextLength;
            if (tokens.Length >= ctx)
                throw new CliException($"the prompt is {tokens.Length} tokens long but the context holds {ctx} (use --ctx-size to enlarge it, up to the model's {loaded.TrainedContextLength})");

            if (!r.GetValue(noDisplayPrompt))
            {
                io.Out.Write(text);
                io.Out.Flush();
            }

            var generator = new TextGenerator(loaded.Context, tokenizer);
            var result = generator.Generate(tokens, new GenerationOptions
            {
                MaxTokens = n,
                Sampler = samplerOptions,
                StopStrings = stops,
                IgnoreEndOfSequence = r.GetValue(ignoreEos),
            }, new StreamingTextSink(io.Out), cancellation);
            io.Out.WriteLine();
            io.Out.Flush();

            io.Error.WriteLine(
                $"kiln: prompt {result.PromptTokens} tokens in {result.PromptTime.TotalMilliseconds:F1} ms ({result.PromptTokensPerSecond:F1} t/s); " +
                $"generated {result.GeneratedTokens} tokens in {result.GenerationTime.TotalMilliseconds:F1} ms ({result.GenerationTokensPerSecond:F1} t/s); " +
                $"stop: {Describe(result.StopReason)}; seed {samplerOptions.Seed}; {loaded.Context.ThreadCount} threads");
            return Task.FromResult(0);
        });
        return command;
    }

    private static string Describe(StopReason reason) => reason switch
    {
        StopReason.EndOfSequence => "end of text",
        StopReason.MaxTokens => "token limit",
        StopReason.StopString => "stop string",
        StopReason.ContextFull => "context full",
        _ => "cancelled",
    };
}
