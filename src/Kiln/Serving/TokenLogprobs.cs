namespace Kiln.Serving;

/// <summary>Log-probabilities from a row of logits (−∞ entries, masked tokens, have probability 0).</summary>
internal static class TokenLogprobs
{
    /// <summary>Logits exponentiated per pass: a stack buffer, so a step's rows allocate nothing.</summary>
    private const int Chunk = 512;

    /// <summary>log softmax(logits)[token]; also returns the row's max and log Σ exp(l − max) for further look-ups.</summary>
    /// <remarks>
    /// The engine reports the chosen token's log-probability for every generated token, so this runs on the loop
    /// thread once per sequence per step while the workers wait: one scalar double exp per vocabulary entry took ~0.2
    /// ms a row (a 32000-token vocabulary), 1–2 ms of an 8-sequence step. Vectorized float exps, summed in float per
    /// chunk and in double across chunks, agree with that to ~1e-6.
    /// </remarks>
    public static float LogSoftmaxOf(ReadOnlySpan<float> logits, int token, out float max, out float logSum)
    {
        max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        Span<float> buffer = stackalloc float[Chunk];
        double sum = 0;
        for (int i = 0; i < logits.Length; i += Chunk)
        {
            var part = logits.Slice(i, Math.Min(Chunk, logits.Length - i));
            var exps = buffer[..part.Length];
            System.Numerics.Tensors.TensorPrimitives.Subtract(part, max, exps);
            System.Numerics.Tensors.TensorPrimitives.Exp(exps, exps);
            sum += System.Numerics.Tensors.TensorPrimitives.Sum<float>(exps);
            // The vector exp is within an ulp, not exact at 0: the best tokens count exactly 1 each, so that a
            // token that is certain (constrained decoding) reads a log-probability of exactly 0.
            for (int j = 0; j < part.Length; j++)
            {
                if (part[j] == max)
                    sum += 1.0 - exps[j];
            }
        }
        logSum = (float)Math.Log(sum);
        return Math.Min(0f, logits[token] - max - logSum);
    }

    /// <summary>The <paramref name="count"/> most likely tokens, most likely first (lower id first on ties).</summary>
    public static TokenLogprob[] Top(ReadOnlySpan<float> logits, int count, float max, float logSum)
    {
        count = Math.Min(count, logits.Length);
        var top = new TokenLogprob[count];
        int filled = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float l = logits[i];
            if (filled == count && l <= top[count - 1].Logprob)
                continue;
            // insertion into the sorted prefix; strict > keeps the lower id ahead on ties
            int at = filled < count ? filled++ : count - 1;
            while (at > 0 && l > top[at - 1].Logprob)
            {
                top[at] = top[at - 1];
                at--;
            }
            top[at] = new TokenLogprob(i, l);
        }
        for (int i = 0; i < count; i++)
            top[i] = top[i] with { Logprob = Math.Min(0f, top[i].Logprob - max - logSum) };
        return top;
    }
}
