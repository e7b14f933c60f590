using Kiln.Formats.Gguf;
using Kiln.Models;
using Kiln.Models.Gpt2;
using Kiln.Models.Llama;
using Kiln.Models.Lora;
using Kiln.Tokenizers;

namespace Kiln.Cli.Tests;

/// <summary>
/// Kiln's greedy tokens through the library (kiln run prints text, not ids), with the logit gap between the chosen
/// token and the runner-up at every step, so that a mismatch with llama.cpp can be told apart from a near-tie.
/// </summary>
internal static class KilnGreedy
{
    public sealed record Result(int[] Tokens, float[] Margins);

    /// <summary>The prompt's tokens as kiln run makes them (the model's BOS/EOS rules, special-token text parsed).</summary>
    public static int[] Tokenize(string model, string text)
    {
        using var file = GgufFile.Open(model);
        return Tokenizer.FromGguf(file).Encode(text, addSpecial: true, parseSpecial: true);
    }

    public static Result Generate(string model, int[] prompt, int count, params string[] adapters)
    {
        var file = GgufFile.Open(model);
        IDisposable owner;
        IModelContext context;
        if (file.TryGetString("general.architecture") == Gpt2Config.Architecture)
        {
            var gpt2 = new Gpt2Model(file, ownsFile: true);
            (owner, context) = (gpt2, new Gpt2Context(gpt2, new Gpt2ContextOptions { Threads = 1 }));
        }
        else
        {
            var llama = new LlamaModel(file, ownsFile: true);
            (owner, context) = (llama, new LlamaContext(llama, new LlamaContextOptions { Threads = 1, Adapters = adapters.Select(LoraAdapter.Load).ToArray() }));
        }
        using (owner)
        using (context)
        {
            var tokens = new int[count];
            var margins = new float[count];
            var logits = new float[context.VocabSize];
            context.Evaluate(prompt, logits);
            for (int i = 0; i < count; i++)
            {
                int best = 0;
                for (int j = 1; j < logits.Length; j++)
                {
                    if (logits[j] > logits[best])
                        best = j;
                }
                float second = float.NegativeInfinity;
                for (int j = 0; j < logits.Length; j++)
                {
                    if (j != best && logits[j] > second)
                        second = logits[j];
                }
                tokens[i] = best;
                margins[i] = logits[best] - second;
                if (i + 1 < count)
                    context.Evaluate([best], logits);
            }
            return new Result(tokens, margins);
        }
    }
}
