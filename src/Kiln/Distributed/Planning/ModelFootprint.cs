using Kiln.Training;

namespace Kiln.Distributed.Planning;

/// <summary>
/// Parameter and activation counts of a model as Kiln's trainer lays it out (<c>GptModel</c>, <c>LlamaTrainModel</c>),
/// per pipeline stage and per tensor-parallel shard. Counted from the shape alone, so a 70B model costs nothing to
/// plan; at one stage and one shard the counts equal what the trainer allocates (tested against it).
/// </summary>
public sealed class ModelFootprint
{
    public ModelFootprint(TrainingConfig config)
    {
        config.Validate();
        Config = config;
        long c = config.Dim, f = config.FfnDim, v = config.Vocab;
        if (config.Family == ModelFamily.Gpt2)
        {
            // ln_1 (2c), c_attn (3c² + 3c), c_proj (c² + c), ln_2 (2c), c_fc (fc + f), mlp c_proj (fc + c)
            LayerParameters = 4 * c * c + 2 * f * c + 9 * c + f;
            EmbeddingParameters = v * c + (long)config.Context * c;
            // ln_f; the classifier is wte, tied to the embedding
            HeadParameters = 2 * c;
        }
        else
        {
            // attn_norm, fused qkv, attn_output, ffn_norm, fused gate_up, ffn_down
            LayerParameters = 2 * c + QkvDim * c + c * c + 3 * f * c;
            EmbeddingParameters = v * c;
            HeadParameters = c + v * c;
        }
    }

    public TrainingConfig Config { get; }

    /// <summary>Width of the fused Q, K, V projection's output.</summary>
    public long QkvDim => Config.Family == ModelFamily.Gpt2 ? 3L * Config.Dim : (Config.Heads + 2L * Config.KvHeadCount) * Config.HeadDim;

    public long LayerParameters { get; }
    public long EmbeddingParameters { get; }

    /// <summary>Final norm and (Llama) the output matrix.</summary>
    public long HeadParameters { get; }

    /// <summary>Ψ: every trainable element.</summary>
    public long Parameters => EmbeddingParameters + Config.Layers * LayerParameters + HeadParameters;

    /// <summary>
    /// Parameters stage <paramref name="stage"/> of <paramref name="stages"/> holds: its layers, the embedding on the
    /// first, the head on the last. GPT-2's tied classifier needs the token embedding on the last stage too, so under
    /// pipeline parallelism that matrix is held twice (Megatron-LM keeps both copies and sums their gradients).
    /// </summary>
    public long StageParameters(int stage, int stages)
    {
        long p = Config.Layers / stages * LayerParameters;
        if (stage == 0)
            p += EmbeddingParameters;
        if (stage == stages - 1)
        {
            p += HeadParameters;
            if (Config.Family == ModelFamily.Gpt2 && stages > 1)
                p += (long)Config.Vocab * Config.Dim;
        }
        return p;
    }

    /// <summary>
    /// Parameters whose products stage <paramref name="stage"/> computes, for the 6·Ψ flops rule: as
    /// <see cref="StageParameters"/> but each matrix counted once, GPT-2's tied one on the last stage (where the
    /// classifier product runs); summed over the stages this is Ψ, so one stage gives the trainer's 6·Ψ exactly.
    /// </summary>
    public long StageComputeParameters(int stage, int stages)
    {
        long p = Config.Layers / stages * LayerParameters;
        long tied = Config.Family == ModelFamily.Gpt2 ? (long)Config.Vocab * Config.Dim : 0;
        if (stage == 0)
            p += EmbeddingParameters - tied;
        if (stage == stages - 1)
            p += HeadParameters + tied;
        return p;
    }

    /// <summary>Largest single unit ZeRO-3 gathers whole on this stage: a layer, the embedding or the head.</summary>
    public long LargestGatheredUnit(int stage, int stages)
    {
        long p = LayerParameters;
        if (stage == 0)
            p = Math.Max(p, EmbeddingParameters);
        if (stage == stages - 1)
            p = Math.Max(p, HeadParameters + (Config.Family == ModelFamily.Gpt2 ? (long)Config.Vocab * Config.Dim : 0));
        return p;
    }

    /// <summary>
    /// Elements one block keeps from forward for backward, per tensor-parallel shard: the row-wide buffers (norm
    /// outputs, projections, residual sums) whole, the per-head and per-hidden-unit ones (Q/K/V, attention output,
    /// MLP hidden) divided by <paramref name="tp"/>; attention probabilities [B, H, T, T] unless recomputed.
    /// </summary>
    public double LayerStoredElements(long sequences, int seq, int tp, bool keepProbabilities)
    {
        long c = Config.Dim, f = Config.FfnDim, rows = sequences * seq;
        double perRow = Config.Family == ModelFamily.Gpt2
            ? 5 * c + 4 + (4.0 * c + 2 * f) / tp          // ln_1, proj, mid, ln_2, fc_proj, 2 norm stats each; qkv, att, fc, gelu split
            : 5 * c + 2 + (double)(QkvDim + c + 3 * f) / tp; // n1, proj, mid, n2, down, 2 rstd; qkv, att, gate_up, swiglu split
        double headRows = (double)sequences * Config.Heads / tp * seq;
        return rows * perRow + headRows * (keepProbabilities ? seq + 1 : 1); // probabilities and log-sum-exp
    }

    /// <summary>Activation-gradient scratch of one block, reused by every block of the stage.</summary>
    public double LayerScratchElements(long sequences, int seq, int tp)
    {
        long c = Config.Dim, f = Config.FfnDim, rows = sequences * seq;
        return Config.Family == ModelFamily.Gpt2
            ? rows * (2 * c + (2.0 * f + 4 * c) / tp)           // dLn1, dLn2 whole; dQkv, dAtt, dFc, dGelu split
            : rows * (2 * c + (double)(3 * f + QkvDim + c) / tp); // dN1, dN2 whole; dSw, dGu, dQkv, dAtt split
    }

    /// <summary>
    /// Activation bytes of stage <paramref name="stage"/> (float32) holding <paramref name="inFlight"/> micro-batches
    /// of <paramref name="sequences"/> sequences: per micro-batch the residual stream into and out of each layer, each
    /// layer's stored buffers (one shared set under block recomputation), the input tokens on the first stage and the
    /// final norm, logits (vocabulary-parallel: split over tp), losses and targets on the last; once, the backward
    /// scratch. With one stage, one shard and one micro-batch this is the trainer's <c>ActivationBytes</c>.
    /// </summary>
    public double StageActivationBytes(int stage, int stages, int tp, long sequences, int seq, int inFlight, Recomputation recompute)
    {
        int layers = Config.Layers / stages;
        long c = Config.Dim, rows = sequences * seq;
        bool first = stage == 0, last = stage == stages - 1;
        bool keepProbabilities = (recompute & Recomputation.Attention) == 0;
        bool sharedBlocks = (recompute & Recomputation.Block) != 0;
        double layer = LayerStoredElements(sequences, seq, tp, keepProbabilities);

        double perMicroBatch = (layers + 1.0) * rows * c + (sharedBlocks ? 0 : layers * layer);
        if (first)
            perMicroBatch += rows; // tokens
        if (last)
            perMicroBatch += rows * c + (double)rows * Config.Vocab / tp + rows + rows // final norm output, logits, losses, targets
                + rows * (Config.Family == ModelFamily.Gpt2 ? 2 : 1);                 // final norm statistics

        double once = (sharedBlocks ? layer : 0) + rows * c + LayerScratchElements(sequences, seq, tp); // dStream
        if (last)
            once += rows * c; // dFinal
        return 4.0 * (inFlight * perMicroBatch + once);
    }
}
