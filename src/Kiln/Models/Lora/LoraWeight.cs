namespace Kiln.Models.Lora;

/// <summary>
/// The low-rank update of one base matrix W [Out × In]: W' = W + scale·B·A with A [Rank × In] and B [Out × Rank],
/// both row-major (exactly llama.cpp's lora_a ne = [In, Rank] and lora_b ne = [Rank, Out]).
/// </summary>
public sealed class LoraWeight
{
    public LoraWeight(int layer, LoraTarget target, int rank, int inDim, int outDim, float[]? a = null, float[]? b = null)
    {
        if (rank <= 0 || inDim <= 0 || outDim <= 0)
            throw new ArgumentException($"LoRA rank {rank}, in {inDim}, out {outDim} must be positive");
        (Layer, Target, Rank, InDim, OutDim) = (layer, target, rank, inDim, outDim);
        A = a ?? new float[rank * inDim];
        B = b ?? new float[outDim * rank];
        if (A.Length != rank * inDim || B.Length != outDim * rank)
            throw new ArgumentException($"LoRA A has {A.Length} values, B {B.Length}; rank {rank}, in {inDim}, out {outDim} need {rank * inDim} and {outDim * rank}");
    }

    public int Layer { get; }
    public LoraTarget Target { get; }
    public int Rank { get; }
    public int InDim { get; }
    public int OutDim { get; }
    public float[] A { get; }
    public float[] B { get; }

    public string TensorName => LoraTargetNames.TensorName(Layer, Target);
}
