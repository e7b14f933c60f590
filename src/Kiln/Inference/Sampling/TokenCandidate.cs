namespace Kiln.Inference.Sampling;

/// <summary>A token still in the running during sampling: its id and its (penalised) logit.</summary>
internal struct TokenCandidate
{
    public int Id;
    public float Logit;

    public TokenCandidate(int id, float logit)
    {
        Id = id;
        Logit = logit;
    }

    /// <summary>
    /// The ranking every truncation uses: higher logit first, and on equal logits the lower id first, so the
    /// ranking is a total order and the kept set never depends on how the selection algorithm visits ties.
    /// </summary>
    public static bool RanksBelow(in TokenCandidate a, in TokenCandidate b) =>
        a.Logit < b.Logit || (a.Logit == b.Logit && a.Id > b.Id);
}
