using Kiln.Compute;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Models.Gpt2;

/// <summary>
/// A GPT-2 model bound to its GGUF file (llama.cpp's "gpt2" architecture: token_embd, position_embd, per block
/// attn_norm, fused attn_qkv, attn_output, ffn_norm, ffn_up, ffn_down, each with a bias, then output_norm and an
/// optional output matrix, tied to the embedding when absent). Matrices stay memory-mapped in their stored type;
/// norms and biases are copied out as floats. Immutable and shareable: per-sequence state lives in
/// <see cref="Gpt2Context"/>.
/// </summary>
public sealed class Gpt2Model : IDisposable
{
    private readonly bool _ownsFile;

    public Gpt2Model(GgufFile file, bool ownsFile = false)
    {
        File = file;
        _ownsFile = ownsFile;
        Config = Gpt2Config.FromGguf(file);
        var c = Config;
        int dim = c.EmbeddingLength;
        TokenEmbedding = WeightMatrix.FromGguf(file, "token_embd.weight", dim, c.VocabSize);
        PositionEmbedding = WeightMatrix.FromGguf(file, "position_embd.weight", dim, c.ContextLength);
        OutputNormWeight = Vector(file, "output_norm.weight", dim);
        OutputNormBias = Vector(file, "output_norm.bias", dim);
        Output = file.FindTensor("output.weight") is null
            ? TokenEmbedding
            : WeightMatrix.FromGguf(file, "output.weight", dim, c.VocabSize);

        var layers = new Gpt2Layer[c.BlockCount];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"blk.{i}.";
            layers[i] = new Gpt2Layer
            {
                AttentionNormWeight = Vector(file, p + "attn_norm.weight", dim),
                AttentionNormBias = Vector(file, p + "attn_norm.bias", dim),
                Qkv = WeightMatrix.FromGguf(file, p + "attn_qkv.weight", dim, c.QkvDim),
                QkvBias = Vector(file, p + "attn_qkv.bias", c.QkvDim),
                Output = WeightMatrix.FromGguf(file, p + "attn_output.weight", dim, dim),
                OutputBias = Vector(file, p + "attn_output.bias", dim),
                FeedForwardNormWeight = Vector(file, p + "ffn_norm.weight", dim),
                FeedForwardNormBias = Vector(file, p + "ffn_norm.bias", dim),
                Up = WeightMatrix.FromGguf(file, p + "ffn_up.weight", dim, c.FeedForwardLength),
                UpBias = Vector(file, p + "ffn_up.bias", c.FeedForwardLength),
                Down = WeightMatrix.FromGguf(file, p + "ffn_down.weight", c.FeedForwardLength, dim),
                DownBias = Vector(file, p + "ffn_down.bias", dim),
            };
        }
        Layers = layers;
    }

    /// <summary>Opens a GGUF model file; the model owns and disposes the mapping.</summary>
    public static Gpt2Model Load(string path)
    {
        var file = GgufFile.Open(path);
        try
        {
            return new Gpt2Model(file, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public GgufFile File { get; }
    public Gpt2Config Config { get; }
    public WeightMatrix TokenEmbedding { get; }
    public WeightMatrix PositionEmbedding { get; }
    public float[] OutputNormWeight { get; }
    public float[] OutputNormBias { get; }
    public WeightMatrix Output { get; }
    public IReadOnlyList<Gpt2Layer> Layers { get; }

    private static float[] Vector(GgufFile file, string name, int length)
    {
        var t = file.FindTensor(name) ?? throw new ModelFormatException($"{file.Path}: missing tensor {name}");
        if (t.Dimensions.Length != 1 || t.Dimensions[0] != length)
            throw new ModelFormatException(
                $"{file.Path}: tensor {name} has shape [{string.Join(", ", t.Dimensions)}], expected [{length}]");
        if (!RowKernels.Supports(t.Type))
            throw new ModelFormatException($"{file.Path}: tensor {name} has unsupported type {GgmlTypeTraits.Name(t.Type)}");
        var result = new float[length];
        RowKernels.Dequantize(t.Type, file.GetTensorBytes(t), result);
        return result;
    }

    public void Dispose()
    {
        if (_ownsFile)
            File.Dispose();
    }
}
