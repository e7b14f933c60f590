namespace Kiln.Serving;

/// <summary>Log-probabilities from a row of logits (−∞ entries, masked tokens, have probability 0).</summary>
internal static class TokenLogprobs
{
    /// <summary>log softmax(logits)[token]; also returns the row's max and log Σ exp(l − max) for further look-ups.</summary>
    public static float LogSoftmaxOf(ReadOnlySpan<float> logits, int token, out float max, out float logSum)
    {
        max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float l in logits)
            sum += Math.Exp(l - max);
        logSum = (float)Math.Log(sum);
        return logits[token] - max - logSum;
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
            top[i] = top[i] with { Logprob = top[i].Logprob - max - logSum };
        return top;
    }
}
