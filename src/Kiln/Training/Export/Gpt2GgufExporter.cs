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
        GgufTensorExport.CheckArguments(config, tokenizer, type);
        var model = new GptModel<float>(config, null);
        if (weights.Length != model.Parameters.Count)
            throw new TrainingConfigException($"{weights.Length} weights given, the configuration has {model.Parameters.Count}");
        weights.CopyTo(model.Parameters.Values);

        var w = new GgufWriter();
        WriteMetadata(w, config, tokenizer, name, type);
        var export = new GgufTensorExport(w, model.Parameters, tokenizer, type);
        // byte-fallback tokens of a character vocabulary; the tied classifier gets them through this too
        export.Add("token_embd.weight", "wte", extraRows: tokenizer.GgufExtraTokens);
        export.Add("position_embd.weight", "wpe");
        export.Add("output_norm.weight", "ln_f.weight");
        export.Add("output_norm.bias", "ln_f.bias");
        for (int l = 0; l < config.Layers; l++)
        {
            string b = $"blk.{l}.", h = $"h.{l}.";
            export.Add(b + "attn_norm.weight", h + "ln_1.weight");
            export.Add(b + "attn_norm.bias", h + "ln_1.bias");
            export.Add(b + "attn_qkv.weight", h + "attn.c_attn.weight");
            export.Add(b + "attn_qkv.bias", h + "attn.c_attn.bias");
            export.Add(b + "attn_output.weight", h + "attn.c_proj.weight");
            export.Add(b + "attn_output.bias", h + "attn.c_proj.bias");
            export.Add(b + "ffn_norm.weight", h + "ln_2.weight");
            export.Add(b + "ffn_norm.bias", h + "ln_2.bias");
            export.Add(b + "ffn_up.weight", h + "mlp.c_fc.weight");
            export.Add(b + "ffn_up.bias", h + "mlp.c_fc.bias");
            export.Add(b + "ffn_down.weight", h + "mlp.c_proj.weight");
            export.Add(b + "ffn_down.bias", h + "mlp.c_proj.bias");
        }
        w.Write(path);
    }

    private static void WriteMetadata(GgufWriter w, TrainingConfig config, TrainingTokenizer tokenizer, string name, GgmlType type)
    {
        w.SetMetadata("general.architecture", GgufValue.FromString("gpt2"));
        w.SetMetadata("general.name", GgufValue.FromString(name));
        w.SetMetadata("general.file_type", GgufValue.FromUInt32(GgufTensorExport.FileType(type)));
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
