using Kiln.Training.Models;

namespace Kiln.Training;

/// <summary>
/// Text samples during training: the model continues a prompt token by token, re-running its forward pass over the
/// last Context tokens (no KV cache: samples are short and rare). Use a model other than the one being trained, or
/// its activations are reallocated for the sampling shape and back.
/// </summary>
public static class TrainingSampler
{
    /// <summary>Appends <paramref name="count"/> tokens to <paramref name="prompt"/>; temperature 0 is greedy.</summary>
    public static int[] Generate(TrainableModel<float> model, ReadOnlySpan<int> prompt, int count, float temperature, TrainingRandom random)
    {
        if (prompt.IsEmpty)
            throw new ArgumentException("the prompt needs at least one token", nameof(prompt));
        int vocab = model.Config.Vocab;
        var tokens = new List<int>(prompt.Length + count);
        tokens.AddRange(prompt);
        var probabilities = new double[vocab];
        for (int i = 0; i < count; i++)
        {
            int window = Math.Min(tokens.Count, model.Config.Context);
            int[] input = tokens.GetRange(tokens.Count - window, window).ToArray();
            model.Forward(input, [], 1, window);
            var logits = model.Logits.Slice((window - 1) * vocab, vocab);
            int next = 0;
            for (int j = 1; j < vocab; j++)
                if (logits[j] > logits[next])
                    next = j;
            if (temperature > 0)
            {
                double max = logits[next], sum = 0;
                for (int j = 0; j < vocab; j++)
                    sum += probabilities[j] = Math.Exp((logits[j] - max) / temperature);
                double u = random.NextDouble() * sum;
                for (next = 0; next < vocab - 1 && (u -= probabilities[next]) >= 0; next++)
                {
                }
            }
            tokens.Add(next);
        }
        return [.. tokens];
    }
}
