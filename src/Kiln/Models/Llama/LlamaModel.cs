using Kiln.Compute;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Models.Llama;

/// <summary>
/// A Llama-family model bound to its GGUF file. Matrices stay in the file's bytes (mapped or copied) in their stored type;
/// only the small 1-D norm vectors and biases are copied out as floats. Immutable and shareable:
/// per-sequence state lives in <see cref="LlamaContext"/>.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private readonly bool _ownsFile;

    public LlamaModel(GgufFile file, bool ownsFile = false)
    {
        File = file;
        _ownsFile = ownsFile;
        Config = LlamaConfig.FromGguf(file);
        var c = Config;
        TokenEmbedding = WeightMatrix.FromGguf(file, "token_embd.weight", c.EmbeddingLength, c.VocabSize);
        OutputNorm = Vector(file, "output_norm.weight", c.EmbeddingLength, required: true)!;
        // Without output.weight the model ties its classifier to the embedding (llama.cpp does the same).
        // Matrices read only by MatMul (and row accessors) may be interleaved for the decode kernels when the file
        // was copied; the embedding is read by plain rows, so it, and a classifier tied to it, stay as stored.
        Output = file.FindTensor("output.weight") is null
            ? TokenEmbedding
            : WeightMatrix.FromGguf(file, "output.weight", c.EmbeddingLength, c.VocabSize, interleave: true);

        var layers = new LlamaLayer[c.BlockCount];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"blk.{i}.";
            layers[i] = new LlamaLayer
            {
                AttentionNorm = Vector(file, p + "attn_norm.weight", c.EmbeddingLength, required: true)!,
                Query = WeightMatrix.FromGguf(file, p + "attn_q.weight", c.EmbeddingLength, c.QueryDim, interleave: true),
                Key = WeightMatrix.FromGguf(file, p + "attn_k.weight", c.EmbeddingLength, c.KvDim, interleave: true),
                Value = WeightMatrix.FromGguf(file, p + "attn_v.weight", c.EmbeddingLength, c.KvDim, interleave: true),
                Output = WeightMatrix.FromGguf(file, p + "attn_output.weight", c.QueryDim, c.EmbeddingLength, interleave: true),
                QueryBias = Vector(file, p + "attn_q.bias", c.QueryDim, required: false),
                KeyBias = Vector(file, p + "attn_k.bias", c.KvDim, required: false),
                ValueBias = Vector(file, p + "attn_v.bias", c.KvDim, required: false),
                FeedForwardNorm = Vector(file, p + "ffn_norm.weight", c.EmbeddingLength, required: true)!,
                Gate = WeightMatrix.FromGguf(file, p + "ffn_gate.weight", c.EmbeddingLength, c.FeedForwardLength, interleave: true),
                Up = WeightMatrix.FromGguf(file, p + "ffn_up.weight", c.EmbeddingLength, c.FeedForwardLength, interleave: true),
                Down = WeightMatrix.FromGguf(file, p + "ffn_down.weight", c.FeedForwardLength, c.EmbeddingLength, interleave: true),
            };
        }
        Layers = layers;
    }

    /// <summary>
    /// Opens a GGUF model file, mapped or copied into huge-page memory as <paramref name="mode"/> says (Auto: copied
    /// when large enough and memory allows, see <see cref="GgufFile.ChooseLoadMode"/>); the model owns and disposes it.
    /// </summary>
    public static LlamaModel Load(string path, GgufLoadMode mode = GgufLoadMode.Auto)
    {
        var file = GgufFile.Open(path, mode);
        try
        {
            return new LlamaModel(file, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public GgufFile File { get; }
    public LlamaConfig Config { get; }
    public WeightMatrix TokenEmbedding { get; }
    public float[] OutputNorm { get; }
    public WeightMatrix Output { get; }
    public IReadOnlyList<LlamaLayer> Layers { get; }

    /// <summary>Bytes of weights one decoded token reads (every matrix once, the embedding row aside).</summary>
    public long WeightBytesPerToken
    {
        get
        {
            long sum = Output.ByteSize;
            foreach (var l in Layers)
                sum += l.Query.ByteSize + l.Key.ByteSize + l.Value.ByteSize + l.Output.ByteSize
                    + l.Gate.ByteSize + l.Up.ByteSize + l.Down.ByteSize;
            return sum;
        }
    }

    private static float[]? Vector(GgufFile file, string name, int length, bool required)
    {
        var t = file.FindTensor(name);
        if (t is null)
            return required ? throw new ModelFormatException($"{file.Path}: missing tensor {name}") : null;
        if (t.ElementCount != length || t.Dimensions[0] != length)
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
