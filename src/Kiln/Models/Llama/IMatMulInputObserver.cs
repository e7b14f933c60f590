namespace Kiln.Models.Llama;

/// <summary>
/// Sees the input of every weight matrix product of a <see cref="LlamaContext"/> forward pass, just before the
/// product: what importance-matrix collection and GPTQ calibration need (statistics of X in W·X per weight).
/// Called on the evaluating thread; <paramref name="rows"/> holds <paramref name="count"/> rows of the weight's
/// column count, valid only during the call.
/// </summary>
public interface IMatMulInputObserver
{
    /// <param name="layer">Block index, or -1 for the output (classifier) weight.</param>
    /// <param name="tensorName">The weight's GGUF tensor name (blk.N.attn_q.weight …).</param>
    void Observe(int layer, string tensorName, ReadOnlySpan<float> rows, int count);
}
