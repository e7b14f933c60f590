using Kiln.Formats.Gguf;
using Kiln.Tensors;
using Kiln.Training.Data;
using Kiln.Training.Models;

namespace Kiln.Training.Export;

/// <summary>
/// Writes a trained GPT-2 model as a GGUF of llama.cpp's "gpt2" architecture, which Kiln's
/// <see cref="Kiln.Models.Gpt2.Gpt2Model"/> also loads. The trainer keeps every matrix as [out, in] row-major,
/// which is ggml's layout (ne0 = in), so matrices are written as they are: wte → token_embd, wpe →
/// position_embd, c_attn → attn_qkv (already fused Q, K, V, as llama.cpp wants it), c_proj → attn_output,
/// c_fc → ffn_up, mlp.c_proj → ffn_down, ln_1/ln_2/ln_f → attn_norm/ffn_norm/output_norm, each with its bias.
/// The classifier is tied to the embedding, so no output.weight is written (llama.cpp then reuses token_embd).
/// Matrices are F32, F16 or Q8_0; norms and biases stay F32.
/// </summary>
public static class Gpt2GgufExporter
{
    public static void Export(TrainingConfig config, ReadOnlySpan<float> weights, TrainingTokenizer tokenizer, string path, GgmlType type, string name = "kiln")
    {
        if (config.Family != ModelFamily.Gpt2)
            throw new TrainingConfigException($"this exporter writes GPT-2-family models; this checkpoint is {config.Family.ToString().ToLowerInvariant()}");
        if (type != GgmlType.F32 && type != GgmlType.F16 && type != GgmlType.Q8_0)
            throw new ArgumentException($"export type {type} is not supported (f32, f16, q8_0)", nameof(type));
        if (type == GgmlType.Q8_0 && (config.Dim % Q8_0.BlockSize != 0 || config.FfnDim % Q8_0.BlockSize != 0))
            throw new TrainingConfigException(
                $"q8_0 stores rows in blocks of {Q8_0.BlockSize}: dim ({config.Dim}) and ffn ({config.FfnDim}) must be multiples of {Q8_0.BlockSize}");
        if (tokenizer.VocabSize > config.Vocab)
            throw new TrainingConfigException($"the tokenizer has {tokenizer.VocabSize} tokens, more than the model's vocab of {config.Vocab}");
        var model = new GptModel<float>(config, null);
        if (weights.Length != model.Parameters.Count)
            throw new TrainingConfigException($"{weights.Length} weights given, the configuration has {model.Parameters.Count}");
        weights.CopyTo(model.Parameters.Values);

        var w = new GgufWriter();
        WriteMetadata(w, config, tokenizer, name, type);
        var ps = model.Parameters;
        void Add(string tensorName, string source, int extraRows = 0)
        {
            var p = ps[source];
            bool vector = p.Shape.Length == 1;
            int cols = vector ? p.Shape[0] : p.Shape[1];
            int rows = vector ? 1 : p.Shape[0];
            ReadOnlyMemory<float> data = ps.Values.AsMemory(p.Offset, rows * cols);
            if (extraRows > 0)
            {
                // byte-fallback tokens of a character vocabulary; the tied classifier gets them through this too
                data = LlamaGgufExporter.AppendRowCopies(data, cols, extraRows, tokenizer.GgufExtraTokenRow);
                rows += extraRows;
            }
            GgmlType t = vector ? GgmlType.F32 : type; // norms and biases stay F32, as llama.cpp keeps them
            long[] dims = vector ? [cols] : [cols, rows];
            w.AddTensor(tensorName, t, dims, stream => LlamaGgufExporter.WriteData(stream, data.Span, t));
        }

        Add("token_embd.weight", "wte", tokenizer.GgufExtraTokens);
        Add("position_embd.weight", "wpe");
        Add("output_norm.weight", "ln_f.weight");
        Add("output_norm.bias", "ln_f.bias");
        for (int l = 0; l < config.Layers; l++)
        {
            string b = $"blk.{l}.", h = $"h.{l}.";
            Add(b + "attn_norm.weight", h + "ln_1.weight");
            Add(b + "attn_norm.bias", h + "ln_1.bias");
            Add(b + "attn_qkv.weight", h + "attn.c_attn.weight");
            Add(b + "attn_qkv.bias", h + "attn.c_attn.bias");
            Add(b + "attn_output.weight", h + "attn.c_proj.weight");
            Add(b + "attn_output.bias", h + "attn.c_proj.bias");
            Add(b + "ffn_norm.weight", h + "ln_2.weight");
            Add(b + "ffn_norm.bias", h + "ln_2.bias");
            Add(b + "ffn_up.weight", h + "mlp.c_fc.weight");
            Add(b + "ffn_up.bias", h + "mlp.c_fc.bias");
            Add(b + "ffn_down.weight", h + "mlp.c_proj.weight");
            Add(b + "ffn_down.bias", h + "mlp.c_proj.bias");
        }
        w.Write(path);
    }

    private static void WriteMetadata(GgufWriter w, TrainingConfig config, TrainingTokenizer tokenizer, string name, GgmlType type)
    {
        w.SetMetadata("general.architecture", GgufValue.FromString("gpt2"));
        w.SetMetadata("general.name", GgufValue.FromString(name));
        // llama.cpp's LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_Q8_0
        w.SetMetadata("general.file_type", GgufValue.FromUInt32(type == GgmlType.F32 ? 0u : type == GgmlType.F16 ? 1u : 7u));
        w.SetMetadata("gpt2.context_length", GgufValue.FromUInt32((uint)config.Context));
        w.SetMetadata("gpt2.embedding_length", GgufValue.FromUInt32((uint)config.Dim));
        w.SetMetadata("gpt2.block_count", GgufValue.FromUInt32((uint)config.Layers));
        w.SetMetadata("gpt2.feed_forward_length", GgufValue.FromUInt32((uint)config.FfnDim));
        w.SetMetadata("gpt2.attention.head_count", GgufValue.FromUInt32((uint)config.Heads));
        w.SetMetadata("gpt2.attention.head_count_kv", GgufValue.FromUInt32((uint)config.KvHeadCount));
        w.SetMetadata("gpt2.attention.layer_norm_epsilon", GgufValue.FromFloat32(config.NormEpsilon));
        w.SetMetadata("gpt2.vocab_size", GgufValue.FromUInt32((uint)(config.Vocab + tokenizer.GgufExtraTokens)));

        tokenizer.WriteGgufMetadata(w, config.Vocab);
    }
}
