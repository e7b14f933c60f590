using Kiln.Formats.Gguf;
using Kiln.Tensors;
using Kiln.Training.Data;
using Kiln.Training.Models;

namespace Kiln.Training.Export;

/// <summary>
/// Writes a trained Llama-family model as a GGUF that Kiln's inference (and llama.cpp) loads: the fused Q/K/V and
/// gate/up projections are split row-wise into attn_q/k/v and ffn_gate/up, RoPE needs no permutation (the trainer
/// rotates adjacent pairs, GGUF "llama" ordering), and the tokenizer writes its own metadata (a character vocabulary
/// as SentencePiece-style tokens plus byte-fallback tokens whose embedding and output rows copy the unknown token's,
/// a byte-level BPE as GPT-2's). Matrices are
/// written as F32, F16 or Q8_0 (ggml's block layout, quantized by <see cref="Q8_0.Quantize"/>); norms stay F32.
/// </summary>
public static class LlamaGgufExporter
{
    public static void Export(TrainingConfig config, ReadOnlySpan<float> weights, TrainingTokenizer tokenizer, string path, GgmlType type, string name = "kiln")
    {
        if (config.Family != ModelFamily.Llama)
            throw new TrainingConfigException($"export writes Llama-family models; this checkpoint is {config.Family.ToString().ToLowerInvariant()}");
        GgufTensorExport.CheckArguments(config, tokenizer, type);
        var model = new LlamaTrainModel<float>(config, null);
        if (weights.Length != model.Parameters.Count)
            throw new TrainingConfigException($"{weights.Length} weights given, the configuration has {model.Parameters.Count}");
        weights.CopyTo(model.Parameters.Values);

        var w = new GgufWriter();
        WriteMetadata(w, config, tokenizer, name, type);
        var export = new GgufTensorExport(w, model.Parameters, tokenizer, type);
        int hd = config.HeadDim, f = config.FfnDim;
        int qRows = config.Heads * hd, kvRows = config.KvHeadCount * hd;
        int extra = tokenizer.GgufExtraTokens;
        export.Add("token_embd.weight", "token_embd.weight", extraRows: extra);
        export.Add("output_norm.weight", "output_norm.weight");
        export.Add("output.weight", "output.weight", extraRows: extra);
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"blk.{l}.";
            export.Add(p + "attn_norm.weight", p + "attn_norm.weight");
            export.Add(p + "attn_q.weight", p + "attn_qkv.weight", 0, qRows);
            export.Add(p + "attn_k.weight", p + "attn_qkv.weight", qRows, kvRows);
            export.Add(p + "attn_v.weight", p + "attn_qkv.weight", qRows + kvRows, kvRows);
            export.Add(p + "attn_output.weight", p + "attn_output.weight");
            export.Add(p + "ffn_norm.weight", p + "ffn_norm.weight");
            export.Add(p + "ffn_gate.weight", p + "ffn_gate_up.weight", 0, f);
            export.Add(p + "ffn_up.weight", p + "ffn_gate_up.weight", f, f);
            export.Add(p + "ffn_down.weight", p + "ffn_down.weight");
        }
        w.Write(path);
    }

    private static void WriteMetadata(GgufWriter w, TrainingConfig config, TrainingTokenizer tokenizer, string name, GgmlType type)
    {
        w.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        w.SetMetadata("general.name", GgufValue.FromString(name));
        w.SetMetadata("general.file_type", GgufValue.FromUInt32(GgufTensorExport.FileType(type)));
        w.SetMetadata("llama.context_length", GgufValue.FromUInt32((uint)config.Context));
        w.SetMetadata("llama.embedding_length", GgufValue.FromUInt32((uint)config.Dim));
        w.SetMetadata("llama.block_count", GgufValue.FromUInt32((uint)config.Layers));
        w.SetMetadata("llama.feed_forward_length", GgufValue.FromUInt32((uint)config.FfnDim));
        w.SetMetadata("llama.attention.head_count", GgufValue.FromUInt32((uint)config.Heads));
        w.SetMetadata("llama.attention.head_count_kv", GgufValue.FromUInt32((uint)config.KvHeadCount));
        w.SetMetadata("llama.attention.layer_norm_rms_epsilon", GgufValue.FromFloat32(config.NormEpsilon));
        w.SetMetadata("llama.rope.freq_base", GgufValue.FromFloat32(config.RopeFreqBase));
        w.SetMetadata("llama.rope.dimension_count", GgufValue.FromUInt32((uint)config.HeadDim));
        w.SetMetadata("llama.vocab_size", GgufValue.FromUInt32((uint)(config.Vocab + tokenizer.GgufExtraTokens)));

        tokenizer.WriteGgufMetadata(w, config.Vocab);
    }
}
