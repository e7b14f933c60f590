using System.Runtime.InteropServices;
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
        if (type != GgmlType.F32 && type != GgmlType.F16 && type != GgmlType.Q8_0)
            throw new ArgumentException($"export type {type} is not supported (f32, f16, q8_0)", nameof(type));
        if (type == GgmlType.Q8_0 && (config.Dim % Q8_0.BlockSize != 0 || config.FfnDim % Q8_0.BlockSize != 0))
            throw new TrainingConfigException(
                $"q8_0 stores rows in blocks of {Q8_0.BlockSize}: dim ({config.Dim}) and ffn ({config.FfnDim}) must be multiples of {Q8_0.BlockSize}");
        if (tokenizer.VocabSize > config.Vocab)
            throw new TrainingConfigException($"the tokenizer has {tokenizer.VocabSize} tokens, more than the model's vocab of {config.Vocab}");
        var model = new LlamaTrainModel<float>(config, null);
        if (weights.Length != model.Parameters.Count)
            throw new TrainingConfigException($"{weights.Length} weights given, the configuration has {model.Parameters.Count}");
        weights.CopyTo(model.Parameters.Values);

        var w = new GgufWriter();
        WriteMetadata(w, config, tokenizer, name, type);
        var ps = model.Parameters;
        void Add(string tensorName, string source, int firstRow = 0, int rows = -1, int extraRows = 0)
        {
            var p = ps[source];
            int cols = p.Shape.Length == 1 ? p.Shape[0] : p.Shape[1];
            int totalRows = p.Shape.Length == 1 ? 1 : p.Shape[0];
            if (rows < 0)
                rows = totalRows;
            ReadOnlyMemory<float> data = ps.Values.AsMemory(p.Offset + firstRow * cols, rows * cols);
            if (extraRows > 0)
            {
                data = AppendRowCopies(data, cols, extraRows, tokenizer.GgufExtraTokenRow);
                rows += extraRows;
            }
            bool vector = p.Shape.Length == 1;
            GgmlType t = vector ? GgmlType.F32 : type; // norms stay F32, as llama.cpp keeps them
            long[] dims = vector ? [cols] : [cols, rows];
            w.AddTensor(tensorName, t, dims, stream => WriteData(stream, data.Span, t));
        }

        int hd = config.HeadDim, f = config.FfnDim;
        int qRows = config.Heads * hd, kvRows = config.KvHeadCount * hd;
        int extra = tokenizer.GgufExtraTokens;
        Add("token_embd.weight", "token_embd.weight", extraRows: extra);
        Add("output_norm.weight", "output_norm.weight");
        Add("output.weight", "output.weight", extraRows: extra);
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"blk.{l}.";
            Add(p + "attn_norm.weight", p + "attn_norm.weight");
            Add(p + "attn_q.weight", p + "attn_qkv.weight", 0, qRows);
            Add(p + "attn_k.weight", p + "attn_qkv.weight", qRows, kvRows);
            Add(p + "attn_v.weight", p + "attn_qkv.weight", qRows + kvRows, kvRows);
            Add(p + "attn_output.weight", p + "attn_output.weight");
            Add(p + "ffn_norm.weight", p + "ffn_norm.weight");
            Add(p + "ffn_gate.weight", p + "ffn_gate_up.weight", 0, f);
            Add(p + "ffn_up.weight", p + "ffn_gate_up.weight", f, f);
            Add(p + "ffn_down.weight", p + "ffn_down.weight");
        }
        w.Write(path);
    }

    /// <summary>Matrix data as F32, F16 or Q8_0 (ggml's block layout); shared with <see cref="Gpt2GgufExporter"/>.</summary>
    /// <summary>
    /// The tokenizer's extra GGUF tokens (byte fallbacks) as rows of an embedding or classifier: copies of one
    /// trained row appended after the trained ones.
    /// </summary>
    internal static float[] AppendRowCopies(ReadOnlyMemory<float> data, int cols, int extraRows, int sourceRow)
    {
        int rows = data.Length / cols;
        var grown = new float[(rows + extraRows) * cols];
        data.Span.CopyTo(grown);
        var copied = data.Span.Slice(sourceRow * cols, cols);
        for (int r = rows; r < rows + extraRows; r++)
            copied.CopyTo(grown.AsSpan(r * cols, cols));
        return grown;
    }

    internal static void WriteData(Stream stream, ReadOnlySpan<float> data, GgmlType type)
    {
        if (type == GgmlType.F32)
        {
            stream.Write(MemoryMarshal.AsBytes(data));
            return;
        }
        if (type == GgmlType.Q8_0)
        {
            var blocks = new byte[data.Length / Q8_0.BlockSize * Q8_0.BlockBytes];
            Q8_0.Quantize(data, blocks);
            stream.Write(blocks);
            return;
        }
        var bytes = new byte[data.Length * 2];
        F16.Quantize(data, bytes);
        stream.Write(bytes);
    }

    private static void WriteMetadata(GgufWriter w, TrainingConfig config, TrainingTokenizer tokenizer, string name, GgmlType type)
    {
        w.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        w.SetMetadata("general.name", GgufValue.FromString(name));
        // llama.cpp's LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_Q8_0
        w.SetMetadata("general.file_type", GgufValue.FromUInt32(type == GgmlType.F32 ? 0u : type == GgmlType.F16 ? 1u : 7u));
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
