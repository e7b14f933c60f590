using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.TestSupport;

/// <summary>
/// Writes small random-weight Llama-family GGUF files with the Kiln writer, and keeps the weights as
/// the floats a reference implementation should use (already rounded through the stored type).
/// The vocabulary is SentencePiece-style: unk, BOS, EOS, the 256 byte tokens, then a few words.
/// </summary>
public sealed class RandomLlama
{
    public string Architecture { get; init; } = "llama";
    public int Dim { get; init; } = 64;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int Ffn { get; init; } = 96;
    public int Context { get; init; } = 64;
    public float RopeBase { get; init; } = 10000f;
    public float? RopeLinearFactor { get; init; }
    public bool Biases { get; init; }
    public bool TiedOutput { get; init; }
    public GgmlType WeightType { get; init; } = GgmlType.F32;
    public int Seed { get; init; } = 1234;

    public static readonly string[] Words = ["▁Once", "▁upon", "▁a", "▁time", "▁the", "▁cat", "▁sat", "."];

    public int Vocab => 3 + 256 + Words.Length;
    public int HeadDim => Dim / Heads;

    /// <summary>Weights as float, keyed by GGUF tensor name, row-major [rows, cols].</summary>
    public Dictionary<string, float[]> Weights { get; } = [];

    public static string[] Tokens()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        for (int b = 0; b < 256; b++)
            tokens.Add($"<0x{b:X2}>");
        tokens.AddRange(Words);
        return [.. tokens];
    }

    public string Write(string path)
    {
        var rng = new Random(Seed);
        var w = new GgufWriter();
        w.SetMetadata("general.architecture", GgufValue.FromString(Architecture));
        w.SetMetadata("general.name", GgufValue.FromString("random test model"));
        string a = Architecture;
        w.SetMetadata($"{a}.context_length", GgufValue.FromUInt32((uint)Context));
        w.SetMetadata($"{a}.embedding_length", GgufValue.FromUInt32((uint)Dim));
        w.SetMetadata($"{a}.block_count", GgufValue.FromUInt32((uint)Layers));
        w.SetMetadata($"{a}.feed_forward_length", GgufValue.FromUInt32((uint)Ffn));
        w.SetMetadata($"{a}.attention.head_count", GgufValue.FromUInt32((uint)Heads));
        w.SetMetadata($"{a}.attention.head_count_kv", GgufValue.FromUInt32((uint)KvHeads));
        w.SetMetadata($"{a}.attention.layer_norm_rms_epsilon", GgufValue.FromFloat32(1e-5f));
        w.SetMetadata($"{a}.rope.freq_base", GgufValue.FromFloat32(RopeBase));
        if (RopeLinearFactor is { } f)
        {
            w.SetMetadata($"{a}.rope.scaling.type", GgufValue.FromString("linear"));
            w.SetMetadata($"{a}.rope.scaling.factor", GgufValue.FromFloat32(f));
        }
        string[] tokens = Tokens();
        var types = new int[tokens.Length];
        var scores = new float[tokens.Length];
        for (int i = 0; i < tokens.Length; i++)
        {
            types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
            scores[i] = i < 259 ? 0f : -(i - 259);
        }
        w.SetMetadata("tokenizer.ggml.model", GgufValue.FromString("llama"));
        w.SetMetadata("tokenizer.ggml.tokens", GgufValue.FromArray(GgufArray.Of(tokens)));
        w.SetMetadata("tokenizer.ggml.scores", GgufValue.FromArray(GgufArray.Of(scores)));
        w.SetMetadata("tokenizer.ggml.token_type", GgufValue.FromArray(GgufArray.Of(types)));
        w.SetMetadata("tokenizer.ggml.unknown_token_id", GgufValue.FromUInt32(0));
        w.SetMetadata("tokenizer.ggml.bos_token_id", GgufValue.FromUInt32(1));
        w.SetMetadata("tokenizer.ggml.eos_token_id", GgufValue.FromUInt32(2));

        int qDim = Heads * HeadDim, kvDim = KvHeads * HeadDim;
        void Matrix(string name, int rows, int cols, GgmlType type, float scale)
        {
            var values = new float[rows * cols];
            for (int i = 0; i < values.Length; i++)
                values[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
            byte[] bytes = new byte[GgmlTypeTraits.RowBytes(type, cols) * rows];
            int rowBytes = (int)GgmlTypeTraits.RowBytes(type, cols);
            for (int r = 0; r < rows; r++)
            {
                var src = values.AsSpan(r * cols, cols);
                var dst = bytes.AsSpan(r * rowBytes, rowBytes);
                switch (type)
                {
                    case GgmlType.F32: System.Runtime.InteropServices.MemoryMarshal.AsBytes(src).CopyTo(dst); break;
                    case GgmlType.F16: F16.QuantizeScalar(src, dst); break;
                    case GgmlType.Q8_0: Q8_0.QuantizeScalar(src, dst); break;
                    case GgmlType.Q4_0: Q4_0.QuantizeScalar(src, dst); break;
                    case var other when !RowKernels.Supports(other):
                        continue; // zero bytes of a type Kiln cannot compute with, for tests of the refusal
                    default: throw new NotSupportedException(type.ToString());
                }
                // The reference sees what the file holds.
                RowKernels.Dequantize(type, dst, src);
            }
            Weights[name] = values;
            w.AddTensor(name, type, [cols, rows], bytes);
        }
        void Vector(string name, int n, float center, float spread)
        {
            var values = new float[n];
            for (int i = 0; i < n; i++)
                values[i] = center + (float)(rng.NextDouble() * 2 - 1) * spread;
            Weights[name] = values;
            w.AddTensor(name, GgmlType.F32, [n], System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        }

        Matrix("token_embd.weight", Vocab, Dim, WeightType, 1f);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"blk.{l}.";
            Vector(p + "attn_norm.weight", Dim, 1f, 0.2f);
            Matrix(p + "attn_q.weight", qDim, Dim, WeightType, 0.3f);
            Matrix(p + "attn_k.weight", kvDim, Dim, WeightType, 0.3f);
            Matrix(p + "attn_v.weight", kvDim, Dim, WeightType, 0.3f);
            if (Biases)
            {
                Vector(p + "attn_q.bias", qDim, 0f, 0.2f);
                Vector(p + "attn_k.bias", kvDim, 0f, 0.2f);
                Vector(p + "attn_v.bias", kvDim, 0f, 0.2f);
            }
            Matrix(p + "attn_output.weight", Dim, qDim, WeightType, 0.2f);
            Vector(p + "ffn_norm.weight", Dim, 1f, 0.2f);
            Matrix(p + "ffn_gate.weight", Ffn, Dim, WeightType, 0.3f);
            Matrix(p + "ffn_up.weight", Ffn, Dim, WeightType, 0.3f);
            Matrix(p + "ffn_down.weight", Dim, Ffn, WeightType, 0.2f);
        }
        Vector("output_norm.weight", Dim, 1f, 0.2f);
        if (!TiedOutput)
            Matrix("output.weight", Vocab, Dim, WeightType, 0.5f);
        w.Write(path);
        return path;
    }
}
